// BM25: the tokenizer, scores and rankings against a brute-force scorer
// written here from the formula, and the debpkg dev split against the
// numbers its README states.
#include "test_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>

namespace contaccum {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(BM25, TokenizeLowercasesSplitsAndDropsStopWords) {
  EXPECT_THAT(BM25Index::tokenize("The Quick-brown fox's 2nd LIFE, is\tA test_case of x86_64"),
              ElementsAre("quick", "brown", "fox", "s", "2nd", "life", "test", "case", "x86", "64"));
  EXPECT_THAT(BM25Index::tokenize("a an and are as at be by for from in is it of on or that the this to with"),
              ElementsAre());
  EXPECT_THAT(BM25Index::tokenize("Andes THEN within"), ElementsAre("andes", "then", "within"));
  // Non-ASCII letters separate words; U+0130 and U+212A lowercase to ASCII
  // in Python ("i" + a combining dot, and "k").
  EXPECT_THAT(BM25Index::tokenize("caf\xC3\xA9z \xC4\xB0stanbul \xE2\x84\xAA"
                                  "elvin"),
              ElementsAre("caf", "z", "i", "stanbul", "kelvin"));
  EXPECT_THAT(BM25Index::tokenize(""), ElementsAre());
}

// Brute force, straight from the formula: every document rescored per query.
struct BruteForce {
  std::vector<std::vector<std::string>> docs;  // tokens after stop-word removal
  double k1, b;
  double score(const std::set<std::string>& terms, size_t d) const {
    double avg = 0;
    for (const auto& doc : docs) avg += static_cast<double>(doc.size());
    avg /= static_cast<double>(docs.size());
    double s = 0;
    for (const auto& t : terms) {  // std::set iterates in lexicographic order, as build.py's sorted()
      int64_t df = 0;
      for (const auto& doc : docs) df += std::count(doc.begin(), doc.end(), t) > 0;
      const double tf = static_cast<double>(std::count(docs[d].begin(), docs[d].end(), t));
      if (tf == 0) continue;
      const double n = static_cast<double>(docs.size()), dl = static_cast<double>(docs[d].size());
      const double idf = std::log(1 + (n - static_cast<double>(df) + 0.5) / (static_cast<double>(df) + 0.5));
      s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avg));
    }
    return s;
  }
};

TEST(BM25, MatchesBruteForceOnRandomCorpora) {
  std::mt19937_64 rng(99);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const std::vector<std::string> stop = {"the", "A", "of", "with"};
  const std::vector<std::string> seps = {" ", "  ", ", ", "-", "\t", ". ", "/"};
  const std::vector<BM25Options> settings = {BM25Options(), BM25Options().k1(1.2).b(0.75), BM25Options().b(0),
                                             BM25Options().k1(0), BM25Options().b(1)};
  for (size_t trial = 0; trial < settings.size(); ++trial) {
    const auto& opt = settings[trial];
    // A small vocabulary, so that many passages tie.
    const int64_t vocab = uniform(3, 25), n = uniform(1, 120);
    auto word = [&] { return "w" + std::to_string(uniform(0, vocab - 1)); };
    TextTable corpus;
    BruteForce brute{{}, opt.k1(), opt.b()};
    for (int64_t d = 0; d < n; ++d) {
      std::vector<std::string> tokens;
      std::string title, text;
      const int64_t title_words = uniform(0, 1) ? uniform(1, 3) : 0, words = uniform(0, 12);
      for (int64_t i = 0; i < title_words + words; ++i) {
        const bool is_stop = uniform(0, 4) == 0;
        std::string w = is_stop ? stop[uniform(0, 3)] : word();
        if (!is_stop) {
          tokens.push_back(w);
          if (uniform(0, 3) == 0) w[0] = 'W';  // case does not matter
        }
        auto& part = i < title_words ? title : text;
        part += (part.empty() ? "" : seps[uniform(0, seps.size() - 1)]) + w;
      }
      if (text.empty()) text = "the";  // only stop words: length 0
      corpus.add("", title, text);
      brute.docs.push_back(tokens);
    }
    const BM25Index index(corpus, opt);
    ASSERT_EQ(index.size(), n);
    std::vector<std::string> queries;
    std::vector<std::set<std::string>> query_terms;
    for (int q = 0; q < 40; ++q) {
      std::string text;
      std::set<std::string> terms;
      for (int64_t i = 0, m = uniform(0, 5); i < m; ++i) {
        // Unknown words and repeats too: repeats count once.
        const auto w = uniform(0, 5) == 0 ? "zz" + std::to_string(i) : word();
        text += w + (uniform(0, 1) ? " " : " the ") + (uniform(0, 3) == 0 ? w + " " : "");
        terms.insert(w);
      }
      queries.push_back(text);
      query_terms.push_back(terms);
    }
    const int64_t k = uniform(1, n + 5);
    const auto got = index.search(queries, k);
    const int64_t width = std::min(k, n);
    ASSERT_EQ(got.indices.sizes(), (std::vector<int64_t>{40, width}));
    EXPECT_EQ(got.scores.scalar_type(), torch::kDouble);
    for (int q = 0; q < 40; ++q) {
      std::vector<std::pair<double, int64_t>> want;
      for (int64_t d = 0; d < n; ++d) want.push_back({brute.score(query_terms[q], static_cast<size_t>(d)), d});
      // Same operations in the same order as the index: equal bit for bit.
      const auto all = index.score_all(queries[q]);
      for (int64_t d = 0; d < n; ++d)
        ASSERT_EQ(all[d].item<double>(), want[d].first) << "trial " << trial << " doc " << d;
      std::stable_sort(want.begin(), want.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      for (int64_t j = 0; j < width; ++j) {
        EXPECT_EQ(got.indices[q][j].item<int64_t>(), want[j].second)
            << "trial " << trial << " query " << q << " rank " << j;
        EXPECT_EQ(got.scores[q][j].item<double>(), want[j].first);
      }
    }
  }
}

TEST(BM25, EmptyCorpusAndBadInput) {
  TextTable empty;
  const BM25Index none(empty);
  EXPECT_EQ(none.search({"x", "y"}, 5).indices.sizes(), (std::vector<int64_t>{2, 0}));
  TextTable corpus;
  corpus.add("d0", "", "alpha beta");
  const BM25Index index(corpus);
  EXPECT_EQ(index.vocabulary_size(), 2);
  EXPECT_EQ(index.postings(), 2);
  EXPECT_DOUBLE_EQ(index.average_length(), 2.0);
  EXPECT_THAT([&] { index.search({"alpha"}, 0); },
              ThrowsMessage<c10::Error>(HasSubstr("BM25Index::search: k must be > 0, got 0")));
  EXPECT_THAT([&] { BM25Index(corpus, BM25Options().k1(-0.5)); },
              ThrowsMessage<c10::Error>(HasSubstr("BM25Options::k1 must be >= 0, got -0.5")));
  EXPECT_THAT([&] { BM25Index(corpus, BM25Options().b(1.5)); },
              ThrowsMessage<c10::Error>(HasSubstr("BM25Options::b must be in [0, 1], got 1.5")));
}

// The dev split of ../shared/data/debpkg: 2,000 queries, one relevant passage
// each, BM25 as its build.py computes it. Ties matter here: in 64 queries
// other passages score exactly as much as the relevant one, so the rank of
// the relevant passage depends on the tie rule. The README's numbers are
// those of trec_eval's rule (score, then document id descending); this
// library breaks ties towards the lower corpus row. The test checks:
// 1. the library's ranking against the relevant passage's rank recomputed
//    from score_all under the lower-row rule (exactly), and
// 2. the README's numbers against the same ranks under trec_eval's rule
//    (|diff| <= 0.0005, the README's rounding).
TEST(BM25, ReproducesDebpkgDevReadme) {
  const std::string dir = CONTACCUM_TEST_DIR "/../../shared/data/debpkg";
  if (!std::filesystem::exists(dir + "/corpus.jsonl")) GTEST_SKIP() << dir << " not found";
  using clock = std::chrono::steady_clock;
  const auto skip = ReaderOptions().on_bad_record(OnBadRecord::Skip);  // the corpus repeats one package id
  const auto t0 = clock::now();
  const auto corpus = read_beir_corpus(dir + "/corpus.jsonl", skip);
  const auto queries = read_beir_queries(dir + "/queries.jsonl", skip);
  const auto qrels = read_qrels(dir + "/qrels/dev.tsv", queries, corpus, skip);
  const auto t1 = clock::now();
  const BM25Index index(corpus);
  const auto t2 = clock::now();
  const auto result = evaluate_bm25(index, queries, qrels);
  const auto t3 = clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::cout << "debpkg: read " << ms(t0, t1) << " ms, index " << corpus.size() << " passages (" << index.postings()
            << " postings) " << ms(t1, t2) << " ms, search " << result.query_rows.size() << " queries " << ms(t2, t3)
            << " ms\n"
            << "  " << result.metrics.to_json() << "\n";
  ASSERT_EQ(corpus.size(), 55090);
  ASSERT_EQ(result.metrics.queries, 2000);

  // Lexicographic rank of each passage id, for trec_eval's tie rule.
  std::vector<int64_t> by_id(static_cast<size_t>(corpus.size()));
  std::iota(by_id.begin(), by_id.end(), 0);
  std::sort(by_id.begin(), by_id.end(), [&](int64_t a, int64_t b) { return corpus.id(a) < corpus.id(b); });
  auto id_rank = torch::empty({corpus.size()}, torch::kLong);
  for (size_t i = 0; i < by_id.size(); ++i) id_rank[by_id[i]] = static_cast<int64_t>(i);
  const auto rows = torch::arange(corpus.size());

  std::map<int64_t, int64_t> relevant;
  for (const auto& q : qrels) relevant[q.query] = q.passage;
  const std::vector<int64_t> cuts = {1, 5, 20, 100};
  std::vector<double> lower(6, 0.0), trec(6, 0.0);
  int64_t tied_queries = 0;
  auto add = [&](std::vector<double>& m, int64_t pos) {
    for (size_t c = 0; c < cuts.size(); ++c) m[c] += pos < cuts[c];
    if (pos < 10) {
      m[4] += 1.0 / static_cast<double>(pos + 1);
      m[5] += 1.0 / std::log2(static_cast<double>(pos + 2));
    }
  };
  for (size_t r = 0; r < result.query_rows.size(); ++r) {
    const int64_t rel = relevant.at(result.query_rows[r]);
    const auto scores = index.score_all(queries.text(result.query_rows[r]));
    const auto s = scores[rel];
    const auto above = scores.gt(s).sum().item<int64_t>();
    const auto tied = scores.eq(s);
    if (tied.sum().item<int64_t>() > 1 && above < 100) ++tied_queries;
    const int64_t pos_lower = above + tied.logical_and(rows.lt(rel)).sum().item<int64_t>();
    const int64_t pos_trec = above + tied.logical_and(id_rank.gt(id_rank[rel])).sum().item<int64_t>();
    add(lower, pos_lower);
    add(trec, pos_trec);
    // The library's ranking puts the relevant passage where the rule says.
    const auto found = result.ranking.indices[r].eq(rel).nonzero();
    if (pos_lower < 100) {
      ASSERT_EQ(found.numel(), 1) << "query row " << result.query_rows[r];
      EXPECT_EQ(found.item<int64_t>(), pos_lower) << "query row " << result.query_rows[r];
    } else {
      EXPECT_EQ(found.numel(), 0);
    }
  }
  const std::vector<std::string> names = {"top@1", "top@5", "top@20", "top@100", "mrr@10", "ndcg@10"};
  const std::vector<double> readme = {0.563, 0.754, 0.844, 0.902, 0.645, 0.683};
  std::cout << "  relevant passage tied with another (above rank 100) in " << tied_queries << " queries\n";
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_NEAR(result.metrics.at(names[i]), lower[i] / 2000, 1e-12) << names[i];
    EXPECT_NEAR(trec[i] / 2000, readme[i], 0.0005 + 1e-12) << names[i] << " under trec_eval's tie rule";
    std::cout << "  " << names[i] << ": lower row first " << lower[i] / 2000 << ", trec_eval ties " << trec[i] / 2000
              << ", README " << readme[i] << "\n";
  }
}

}  // namespace
}  // namespace contaccum
