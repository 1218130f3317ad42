// The synthetic fallback data set: readable by the library's readers with the
// counts asked for, every query's positive present, deterministic, and hard
// enough that word overlap alone does not solve it.
#include "test_util.h"

#include <contaccum/data/readers.h>
#include <contaccum/data/synthetic_dataset.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Synthetic : public test::TempDirTest {};
using test::error_of;
using test::slurp;

std::vector<std::string> split_words(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct Loaded {
  TextTable corpus, queries;
  std::vector<Qrel> train, dev;
};

Loaded load(const fs::path& dir) {
  Loaded l;
  l.corpus = read_beir_corpus((dir / "corpus.jsonl").string());
  l.queries = read_beir_queries((dir / "queries.jsonl").string());
  // read_qrels fails on an id missing from the tables.
  l.train = read_qrels((dir / "qrels" / "train.tsv").string(), l.queries, l.corpus);
  l.dev = read_qrels((dir / "qrels" / "dev.tsv").string(), l.queries, l.corpus);
  return l;
}

TEST_F(Synthetic, ReadableWithTheCountsAskedForAndEveryPositivePresent) {
  const auto options = SyntheticDatasetOptions().passages(500).train_queries(300).dev_queries(100).paraphrase_rate(0);
  build_synthetic_dataset((dir_ / "set").string(), options);
  const auto l = load(dir_ / "set");
  EXPECT_EQ(l.corpus.size(), 500);
  EXPECT_EQ(l.queries.size(), 400);
  ASSERT_EQ(l.train.size(), 300u);
  ASSERT_EQ(l.dev.size(), 100u);
  std::set<int64_t> asked, about;
  for (const auto* split : {&l.train, &l.dev}) {
    for (const auto& q : *split) {
      EXPECT_TRUE(asked.insert(q.query).second) << "one judgement per query";
      EXPECT_TRUE(about.insert(q.passage).second) << "one query per passage";
      EXPECT_EQ(q.score, 1);
      const auto qid = std::string(l.queries.id(q.query));
      EXPECT_EQ("d:" + qid.substr(2), l.corpus.id(q.passage));
      // Without paraphrases every query word is in its passage.
      const auto passage = split_words(l.corpus.text(q.passage));
      const auto words = split_words(l.queries.text(q.query));
      EXPECT_EQ(words.size(), 4u);
      EXPECT_EQ(std::set<std::string>(words.begin(), words.end()).size(), words.size()) << "distinct words";
      for (const auto& w : words) {
        EXPECT_NE(std::find(passage.begin(), passage.end(), w), passage.end()) << w << " of " << qid;
      }
    }
  }
  for (int64_t row = 0; row < l.corpus.size(); ++row) {
    EXPECT_EQ(l.corpus.id(row), "d:" + std::to_string(row));
    EXPECT_EQ(l.corpus.title(row), "");
    EXPECT_EQ(split_words(l.corpus.text(row)).size(), 30u);
  }
  // queries.jsonl: the training queries, then the dev ones.
  for (size_t i = 0; i < l.train.size(); ++i) EXPECT_EQ(l.train[i].query, static_cast<int64_t>(i));
  for (size_t i = 0; i < l.dev.size(); ++i) EXPECT_EQ(l.dev[i].query, static_cast<int64_t>(300 + i));
}

TEST_F(Synthetic, ParaphrasesNeverOccurInPassages) {
  build_synthetic_dataset(
      (dir_ / "set").string(),
      SyntheticDatasetOptions().passages(300).train_queries(200).dev_queries(50).paraphrase_rate(1));
  const auto l = load(dir_ / "set");
  std::set<std::string> passage_words;
  for (int64_t row = 0; row < l.corpus.size(); ++row) {
    for (const auto& w : split_words(l.corpus.text(row))) passage_words.insert(w);
  }
  for (int64_t row = 0; row < l.queries.size(); ++row) {
    for (const auto& w : split_words(l.queries.text(row))) EXPECT_EQ(passage_words.count(w), 0u) << w;
  }
}

TEST_F(Synthetic, SameSeedSameFilesOtherSeedOtherData) {
  const auto options = SyntheticDatasetOptions().passages(200).train_queries(100).dev_queries(50);
  build_synthetic_dataset((dir_ / "a").string(), options);
  build_synthetic_dataset((dir_ / "b").string(), options);
  build_synthetic_dataset((dir_ / "c").string(), SyntheticDatasetOptions(options).seed(14));
  for (const auto* file : {"corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv"}) {
    EXPECT_EQ(slurp(dir_ / "a" / file), slurp(dir_ / "b" / file)) << file;
    EXPECT_NE(slurp(dir_ / "a" / file), slurp(dir_ / "c" / file)) << file;
  }
  // Dev queries do not depend on how many training queries there are.
  build_synthetic_dataset((dir_ / "d").string(), SyntheticDatasetOptions(options).train_queries(20));
  EXPECT_EQ(slurp(dir_ / "a" / "qrels/dev.tsv"), slurp(dir_ / "d" / "qrels/dev.tsv"));
}

// Top@1 of ranking passages by the number of distinct query words they
// contain (a tie counts as a miss).
double word_overlap_top1(const Loaded& l) {
  std::unordered_map<std::string, std::vector<int64_t>> postings;
  for (int64_t row = 0; row < l.corpus.size(); ++row) {
    auto words = split_words(l.corpus.text(row));
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    for (const auto& w : words) postings[w].push_back(row);
  }
  int64_t top1 = 0;
  std::vector<int> overlap(static_cast<size_t>(l.corpus.size()));
  for (const auto& q : l.dev) {
    std::fill(overlap.begin(), overlap.end(), 0);
    for (const auto& w : split_words(l.queries.text(q.query))) {
      const auto it = postings.find(w);
      if (it == postings.end()) continue;
      for (const auto row : it->second) ++overlap[static_cast<size_t>(row)];
    }
    const int best = *std::max_element(overlap.begin(), overlap.end());
    const auto ties = std::count(overlap.begin(), overlap.end(), best);
    top1 += overlap[static_cast<size_t>(q.passage)] == best && ties == 1;
  }
  return static_cast<double>(top1) / static_cast<double>(l.dev.size());
}

// The defaults leave room to learn: word overlap finds some answers, and
// nearly all once the paraphrases are gone, so the passage's words determine
// the answer and the paraphrases are what a retriever has to learn.
TEST_F(Synthetic, WordOverlapFindsSomeAnswersParaphrasesHideTheRest) {
  build_synthetic_dataset((dir_ / "set").string());
  const auto l = load(dir_ / "set");
  EXPECT_EQ(l.corpus.size(), 10000);
  EXPECT_EQ(l.train.size(), 8000u);
  EXPECT_EQ(l.dev.size(), 1000u);
  const double rate = word_overlap_top1(l);
  EXPECT_GT(rate, 0.2);
  EXPECT_LT(rate, 0.6);
  build_synthetic_dataset((dir_ / "plain").string(), SyntheticDatasetOptions().paraphrase_rate(0));
  EXPECT_GT(word_overlap_top1(load(dir_ / "plain")), 0.8);
}

TEST_F(Synthetic, ReplacesAnOldDataSetAndNamesBadOptions) {
  const auto out = dir_ / "set";
  fs::create_directories(out);
  std::ofstream(out / "marker") << "old";
  build_synthetic_dataset(out.string(), SyntheticDatasetOptions().passages(50).train_queries(20).dev_queries(10));
  EXPECT_FALSE(fs::exists(out / "marker"));
  EXPECT_EQ(load(out).corpus.size(), 50);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1) << "no leftovers";

  struct Bad {
    SyntheticDatasetOptions options;
    std::string message;
  };
  const auto small = SyntheticDatasetOptions().passages(50).train_queries(20).dev_queries(10);
  const std::vector<Bad> cases = {
      {SyntheticDatasetOptions(small).topics(0), "SyntheticDatasetOptions::topics must be > 0, got 0"},
      {SyntheticDatasetOptions(small).words_per_topic(0),
       "SyntheticDatasetOptions::words_per_topic must be > 0, got 0"},
      {SyntheticDatasetOptions(small).background_words(-1),
       "SyntheticDatasetOptions::background_words must be >= 0, got -1"},
      {SyntheticDatasetOptions(small).passages(0), "SyntheticDatasetOptions::passages must be > 0, got 0"},
      {SyntheticDatasetOptions(small).train_queries(0), "SyntheticDatasetOptions::train_queries must be > 0, got 0"},
      {SyntheticDatasetOptions(small).dev_queries(-1), "SyntheticDatasetOptions::dev_queries must be >= 0, got -1"},
      {SyntheticDatasetOptions(small).train_queries(45),
       "train_queries + dev_queries must be <= passages (one query per passage), got 45 + 10 > 50"},
      {SyntheticDatasetOptions(small).focus_words(101),
       "SyntheticDatasetOptions::focus_words must be in [1, words_per_topic = 100], got 101"},
      {SyntheticDatasetOptions(small).passage_words(3),
       "SyntheticDatasetOptions::passage_words must be >= focus_words = 4, got 3"},
      {SyntheticDatasetOptions(small).query_words(5),
       "SyntheticDatasetOptions::query_words must be in [1, focus_words = 4], got 5"},
      {SyntheticDatasetOptions(small).topic_fraction(1.5),
       "SyntheticDatasetOptions::topic_fraction must be in [0, 1], got 1.5"},
      {SyntheticDatasetOptions(small).paraphrase_rate(-0.1),
       "SyntheticDatasetOptions::paraphrase_rate must be in [0, 1], got -0.1"},
      {SyntheticDatasetOptions(small).background_words(0),
       "SyntheticDatasetOptions::background_words must be > 0 when topic_fraction < 1, got 0"},
      {SyntheticDatasetOptions(small).topics(4000),
       "2 * topics * words_per_topic + background_words must be <= 343000"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(error_of([&] { build_synthetic_dataset(out.string(), c.options); }), HasSubstr(c.message));
    EXPECT_EQ(load(out).corpus.size(), 50) << "a rejected build leaves the old data set";
  }
  EXPECT_THAT(error_of([&] { build_synthetic_dataset("", small); }),
              HasSubstr("build_synthetic_dataset: out_dir must not be empty"));
}

}  // namespace
}  // namespace contaccum
