// Using a trained retriever: block-by-block exact search (bit-identical to
// exact_search, memory of one block), embeddings files (bit-exact round trip,
// read by NumPy, never half-written), sharded evaluation equal to one
// process, and BM25 fusion against hand-computed cases and a Python
// reference.
#include "test_util.h"

#include <contaccum/distributed/process_group.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Scores with many ties: small integer-valued vectors.
torch::Tensor tied(int64_t rows, int64_t dim) { return torch::randint(-2, 3, {rows, dim}).to(torch::kFloat); }

TEST(TopKAccumulator, BlocksInAnyCutEqualExactSearchBitForBit) {
  torch::manual_seed(3);
  const auto queries = tied(37, 8), corpus = tied(1000, 8);
  const auto options = SearchOptions().k(25).query_block(16).corpus_block(64);
  const auto want = exact_search(queries, corpus, options);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 5; ++trial) {
    TopKAccumulator top(queries, options);
    for (int64_t at = 0; at < corpus.size(0);) {
      const int64_t n = std::min<int64_t>(corpus.size(0) - at, 1 + static_cast<int64_t>(rng() % 300));
      top.add(corpus.slice(0, at, at + n));
      at += n;
    }
    const auto got = top.result();
    EXPECT_TRUE(torch::equal(got.indices, want.indices)) << "trial " << trial;
    EXPECT_TRUE(torch::equal(got.scores, want.scores)) << "trial " << trial;
    EXPECT_EQ(top.rows(), 1000);
  }
  // Two shards searched apart and merged: the same ranking.
  TopKAccumulator first(queries, options), second(queries, options);
  first.add(corpus.slice(0, 0, 600), 0);
  second.add(corpus.slice(0, 600, 1000), 600);
  first.merge(second.result());
  EXPECT_TRUE(torch::equal(first.result().indices, want.indices));
}

TEST(TopKAccumulator, RejectsABlockOfAnotherWidth) {
  TopKAccumulator top(torch::randn({2, 4}));
  EXPECT_THAT(test::error_of([&] {
                top.add(torch::randn({3, 5}));
              }),
              HasSubstr("block dim (5) must equal the queries' dim (4)"));
}

class EmbeddingsTest : public test::TempDirTest {};

TEST_F(EmbeddingsTest, RoundTripBitExactAndNumPyReadsThem) {
  torch::manual_seed(9);
  const auto rows = torch::randn({203, 7});
  std::vector<std::string> ids;
  for (int i = 0; i < 203; ++i) ids.push_back("doc-" + std::to_string(i * 7));
  const auto path = (dir_ / "emb").string();
  EmbeddingsInfo info;
  info.count = 203;
  info.dim = 7;
  info.similarity = "cosine";
  EmbeddingsWriter writer(path, info);
  writer.append(rows.slice(0, 0, 100), std::vector<std::string>(ids.begin(), ids.begin() + 100));
  EXPECT_FALSE(fs::exists(path)) << "visible before commit";
  writer.append(rows.slice(0, 100, 203), std::vector<std::string>(ids.begin() + 100, ids.end()));
  writer.commit();
  EmbeddingsReader reader(path);
  EXPECT_EQ(reader.info().count, 203);
  EXPECT_EQ(reader.info().similarity, "cosine");
  EXPECT_EQ(reader.ids(), ids);
  EXPECT_TRUE(torch::equal(reader.read_all(), rows));
  EXPECT_TRUE(torch::equal(reader.read(57, 131), rows.slice(0, 57, 131)));
  // NumPy, without this library: the same bytes and ids.
  const auto out = dir_ / "from_numpy.bin";
  const std::string script =
      "import numpy as np, sys; a = np.load(sys.argv[1] + '/embeddings.npy', mmap_mode='r'); "
      "assert a.dtype == np.float32 and a.shape == (203, 7); "
      "ids = open(sys.argv[1] + '/ids.txt').read().split('\\n')[:-1]; "
      "assert ids[5] == 'doc-35' and len(ids) == 203; open(sys.argv[2], 'wb').write(a.tobytes())";
  const std::string command =
      std::string(CONTACCUM_TEST_PYTHON) + " -c \"" + script + "\" " + path + " " + out.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const auto bytes = test::slurp(out);
  ASSERT_EQ(bytes.size(), 203u * 7u * 4u);
  EXPECT_EQ(std::memcmp(bytes.data(), rows.contiguous().data_ptr<float>(), bytes.size()), 0);
}

TEST_F(EmbeddingsTest, AnAbandonedOrFailedWriteLeavesNothing) {
  const auto path = (dir_ / "emb").string();
  EmbeddingsInfo info;
  info.count = 10;
  info.dim = 3;
  {
    EmbeddingsWriter writer(path, info);
    writer.append(torch::ones({4, 3}), {"a", "b", "c", "d"});
    EXPECT_THAT(test::error_of([&] { writer.commit(); }), HasSubstr("4 rows of 10 written"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir_)) << "a temporary was left behind";
  {
    EmbeddingsWriter writer(path, info);
    auto bad = torch::ones({2, 3});
    bad[1][2] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THAT(test::error_of([&] { writer.append(bad, {"a", "b"}); }), HasSubstr("is not finite"));
  }
  EXPECT_TRUE(fs::is_empty(dir_));
  EXPECT_THAT(test::error_of([&] { EmbeddingsReader reader(path); }), HasSubstr("no file"));
}

TEST_F(EmbeddingsTest, ATruncatedFileIsRefusedNamingIt) {
  const auto path = (dir_ / "emb").string();
  EmbeddingsInfo info;
  info.count = 4;
  info.dim = 2;
  EmbeddingsWriter writer(path, info);
  writer.append(torch::ones({4, 2}), {"a", "b", "c", "d"});
  writer.commit();
  fs::resize_file(fs::path(path) / "embeddings.npy", fs::file_size(fs::path(path) / "embeddings.npy") - 4);
  EXPECT_THAT(test::error_of([&] { EmbeddingsReader reader(path); }), HasSubstr("embeddings.npy: "));
  EXPECT_THAT(test::error_of([&] { EmbeddingsReader reader(path); }), HasSubstr("(truncated?)"));
}

// --- fusion

SearchResult ranking(std::vector<std::vector<int64_t>> rows, std::vector<std::vector<double>> scores) {
  const int64_t q = static_cast<int64_t>(rows.size()), k = static_cast<int64_t>(rows[0].size());
  SearchResult r{torch::zeros({q, k}, torch::kDouble), torch::zeros({q, k}, torch::kLong)};
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      r.indices[i][j] = rows[static_cast<size_t>(i)][static_cast<size_t>(j)];
      r.scores[i][j] = scores[static_cast<size_t>(i)][static_cast<size_t>(j)];
    }
  }
  return r;
}

std::vector<int64_t> row_of(const SearchResult& r, int64_t q) {
  std::vector<int64_t> out;
  for (int64_t j = 0; j < r.indices.size(1); ++j) {
    if (r.indices[q][j].item<int64_t>() >= 0) out.push_back(r.indices[q][j].item<int64_t>());
  }
  return out;
}

TEST(Fusion, MatchesHandComputedRankings) {
  // Query 0: dense d2 > d0 = d1; BM25 d1 > d3, d0 scores 0 (no match).
  // Query 1: no BM25 match at all.
  const auto dense = ranking({{2, 0, 1}, {4, 1, 3}}, {{0.9, 0.5, 0.5}, {3.0, 2.0, 1.0}});
  const auto bm25 = ranking({{1, 3, 0}, {0, 1, 2}}, {{3.0, 1.0, 0.0}, {0.0, 0.0, 0.0}});
  const auto rrf = fuse_rankings(dense, bm25, FusionOptions().k(10));
  // d1: .5/63 + .5/61 > d2: .5/61 > d0 = d3: .5/62 (tie: lower row first).
  EXPECT_EQ(row_of(rrf, 0), (std::vector<int64_t>{1, 2, 0, 3}));
  EXPECT_DOUBLE_EQ(rrf.scores[0][0].item<double>(), 0.5 / 63 + 0.5 / 61);
  EXPECT_DOUBLE_EQ(rrf.scores[0][2].item<double>(), 0.5 / 62);
  EXPECT_EQ(row_of(rrf, 1), (std::vector<int64_t>{4, 1, 3}));
  // Linear: dense min-max d2 1, d0 0, d1 0; BM25 d1 1, d3 0.
  const auto linear = fuse_rankings(dense, bm25, FusionOptions().method(FusionMethod::Linear).k(10));
  EXPECT_EQ(row_of(linear, 0), (std::vector<int64_t>{1, 2, 0, 3}));
  EXPECT_DOUBLE_EQ(linear.scores[0][0].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(linear.scores[0][1].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(linear.scores[0][3].item<double>(), 0.0);
  // Weight 0.8 towards dense: d2 0.8 > d1 0.2 > d0 = d3 0.
  const auto dense_heavy = fuse_rankings(dense, bm25, FusionOptions().method(FusionMethod::Linear).weight(0.8));
  EXPECT_EQ(row_of(dense_heavy, 0), (std::vector<int64_t>{2, 1, 0, 3}));
  // k cuts; padding is -1 / -inf.
  const auto two = fuse_rankings(dense, bm25, FusionOptions().k(2));
  EXPECT_EQ(two.indices.size(1), 2);
  EXPECT_THAT(test::error_of([&] { fuse_rankings(dense, bm25, FusionOptions().weight(1.5)); }),
              HasSubstr("fusion weight must be in [0, 1], got 1.5"));
}

// Rankings are read row by row by address: one given as a transposed view
// (column-major, float64 scores) fuses as its contiguous copy does.
TEST(Fusion, ReadsStridedRankingsAsTheirValues) {
  const auto dense = ranking({{2, 0, 1}, {4, 1, 3}}, {{0.9, 0.5, 0.25}, {3.0, 2.0, 1.0}});
  const auto bm25 = ranking({{1, 3, 0}, {0, 1, 2}}, {{3.0, 1.0, 0.5}, {2.0, 0.5, 0.25}});
  const SearchResult strided{dense.scores.t().contiguous().t(), dense.indices.t().contiguous().t()};
  ASSERT_FALSE(strided.indices.is_contiguous());
  for (const auto method : {FusionMethod::Rrf, FusionMethod::Linear}) {
    const auto want = fuse_rankings(dense, bm25, FusionOptions().method(method).k(10));
    const auto got = fuse_rankings(strided, bm25, FusionOptions().method(method).k(10));
    EXPECT_TRUE(torch::equal(got.indices, want.indices));
    EXPECT_TRUE(torch::equal(got.scores, want.scores));
  }
}

TEST_F(EmbeddingsTest, FusionAgreesWithAPythonReference) {
  torch::manual_seed(21);
  const int64_t q = 30, k = 12, corpus = 40;
  auto random_ranking = [&](bool with_zeros) {
    SearchResult r{torch::zeros({q, k}, torch::kDouble), torch::zeros({q, k}, torch::kLong)};
    for (int64_t i = 0; i < q; ++i) {
      r.indices[i] = torch::randperm(corpus).slice(0, 0, k);
      auto s = std::get<0>(torch::rand({k}, torch::kDouble).mul(5).round().sort(0, true));
      if (with_zeros && i % 3 == 0) s.slice(0, k / 2).zero_();
      r.scores[i] = s;
    }
    return r;
  };
  const auto dense = random_ranking(false), bm25 = random_ranking(true);
  nlohmann::json j;
  auto rows = [](const torch::Tensor& t) {
    std::vector<std::vector<double>> out;
    for (int64_t i = 0; i < t.size(0); ++i) {
      std::vector<double> row;
      for (int64_t c = 0; c < t.size(1); ++c) row.push_back(t[i][c].item<double>());
      out.push_back(row);
    }
    return out;
  };
  j["dense_rows"] = rows(dense.indices.to(torch::kDouble));
  j["dense_scores"] = rows(dense.scores);
  j["bm25_rows"] = rows(bm25.indices.to(torch::kDouble));
  j["bm25_scores"] = rows(bm25.scores);
  const auto in = dir_ / "in.json", out = dir_ / "out.json";
  std::ofstream(in) << j.dump();
  const std::string command = std::string(CONTACCUM_TEST_PYTHON) + " " + CONTACCUM_TEST_DIR +
                              "/python/fusion_reference.py " + in.string() + " " + out.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const auto want = nlohmann::json::parse(test::slurp(out));
  for (const auto& [name, method] : {std::pair{"rrf", FusionMethod::Rrf}, std::pair{"linear", FusionMethod::Linear}}) {
    for (double w : {0.3, 0.5}) {
      const auto got = fuse_rankings(dense, bm25, FusionOptions().method(method).weight(w).k(k));
      const auto& ref = want[std::string(name) + "_" + (w == 0.5 ? "0.5" : "0.3")];
      for (int64_t i = 0; i < q; ++i) {
        const auto mine = row_of(got, i);
        const std::vector<int64_t> theirs = ref["rows"][static_cast<size_t>(i)];
        EXPECT_EQ(mine, theirs) << name << " w " << w << " query " << i;
        for (size_t c = 0; c < theirs.size(); ++c) {
          EXPECT_NEAR(got.scores[i][static_cast<int64_t>(c)].item<double>(),
                      static_cast<double>(ref["scores"][static_cast<size_t>(i)][c]), 1e-12);
        }
      }
    }
  }
}

TEST(Fusion, TheTunedWeightFollowsTheTuningSplit) {
  // Dense finds every relevant passage first, BM25 ranks it last: weight 1;
  // the other way round: weight 0.
  const std::vector<Qrel> qrels = {{0, 7, 1}, {1, 8, 1}};
  const auto good = ranking({{7, 1, 2}, {8, 1, 2}}, {{3, 2, 1}, {3, 2, 1}});
  const auto bad = ranking({{1, 2, 7}, {1, 2, 8}}, {{3, 2, 1}, {3, 2, 1}});
  // RRF puts passage 7 first once w / 61 + (1 - w) / 63 > w / 62 + (1 - w) / 61,
  // from w = 0.7 on the grid (0.65 falls short): the lowest best weight.
  EXPECT_DOUBLE_EQ(tune_fusion_weight(good, bad, {0, 1}, qrels, FusionOptions()), 0.7);
  EXPECT_GT(0.7 / 61 + 0.3 / 63, 0.7 / 62 + 0.3 / 61);
  EXPECT_LT(0.65 / 61 + 0.35 / 63, 0.65 / 62 + 0.35 / 61);
  EXPECT_EQ(tune_fusion_weight(bad, good, {0, 1}, qrels, FusionOptions()), 0.0);
}

// --- sharded evaluation

DualEncoder small_model() {
  torch::manual_seed(17);
  auto tower = [] { return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(50, 8).embedding_dim(8)).ptr(); };
  return DualEncoder(tower(), tower());
}

TextEncoderFn numbers_tokenizer() {
  return [](const std::vector<std::string>& texts, int64_t max_length) {
    EncoderInput in;
    in.input_ids = torch::zeros({static_cast<int64_t>(texts.size()), 3}, torch::kLong);
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto h = std::hash<std::string>{}(texts[i]);
      for (int64_t j = 0; j < 3; ++j)
        in.input_ids[static_cast<int64_t>(i)][j] = 1 + static_cast<int64_t>((h >> (8 * j)) % 49);
    }
    in.attention_mask = torch::ones_like(in.input_ids);
    (void)max_length;
    return in;
  };
}

// 40 queries, each judging one of 301 passages (rows d0..d300).
std::pair<TextTable, std::vector<Qrel>> forty_queries() {
  TextTable queries;
  std::vector<Qrel> qrels;
  for (int i = 0; i < 40; ++i) {
    queries.add("q" + std::to_string(i), "", "query " + std::to_string(i));
    qrels.push_back({i, (i * 7) % 301, 1});
  }
  return {std::move(queries), std::move(qrels)};
}

DenseEvalOptions small_eval_options() { return DenseEvalOptions().batch_size(16).search(SearchOptions().k(20)); }

TEST(Eval, ShardedOverRanksEqualsOneProcess) {
  TextTable corpus;
  for (int i = 0; i < 301; ++i) corpus.add("d" + std::to_string(i), "", "passage " + std::to_string(i));
  const auto judged = forty_queries();
  const auto& queries = judged.first;
  const auto& qrels = judged.second;
  auto model = small_model();
  const auto options = small_eval_options();
  const auto want = evaluate_dense(model, numbers_tokenizer(), corpus, queries, qrels, options);
  for (int64_t world : {2, 3}) {
    auto group = make_in_process_group(world);
    std::vector<EvalResult> got(static_cast<size_t>(world));
    // Built here: torch's one generator must not be seeded from two threads.
    std::vector<DualEncoder> models;
    for (int64_t r = 0; r < world; ++r) models.push_back(small_model());
    std::vector<std::thread> threads;
    for (int64_t r = 0; r < world; ++r) {
      threads.emplace_back([&, r] {
        got[static_cast<size_t>(r)] = evaluate_dense(models[static_cast<size_t>(r)], numbers_tokenizer(), corpus,
                                                     queries, qrels, options, *group[static_cast<size_t>(r)]);
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_TRUE(torch::equal(got[0].ranking.indices, want.ranking.indices)) << world << " ranks";
    EXPECT_TRUE(torch::allclose(got[0].ranking.scores, want.ranking.scores, 1e-6, 1e-6));
    EXPECT_EQ(got[0].metrics.to_json(), want.metrics.to_json());
    EXPECT_EQ(got[1].metrics.queries, 0);  // only rank 0 scores
  }
}

// --- a corpus read from its file

TEST_F(EmbeddingsTest, ACorpusStreamedFromItsFileGivesWhatTheTableGives) {
  std::string text;
  for (int i = 0; i < 301; ++i) {
    text += "{\"_id\": \"d" + std::to_string(i) + "\", \"title\": \"t" + std::to_string(i % 7) +
            "\", \"text\": \"passage " + std::to_string(i) + "\"}\n";
    if (i % 50 == 3) text += "{\"_id\": \"d" + std::to_string(i) + "\", \"text\": \"repeat\"}\n";
  }
  const auto path = write("corpus.jsonl", text);
  const auto skip = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  const auto table = read_beir_corpus(path, skip);
  const CorpusStream stream(path, skip);
  ASSERT_EQ(stream.size(), 301);
  const auto judged = forty_queries();
  const auto& queries = judged.first;
  const auto& qrels = judged.second;
  auto model = small_model();
  const auto options = small_eval_options();
  const auto want = evaluate_dense(model, numbers_tokenizer(), table, queries, qrels, options);
  const auto got = evaluate_dense(model, numbers_tokenizer(), stream, queries, qrels, options);
  EXPECT_TRUE(torch::equal(got.ranking.indices, want.ranking.indices));
  EXPECT_TRUE(torch::equal(got.ranking.scores, want.ranking.scores));
  EXPECT_EQ(got.metrics.to_json(), want.metrics.to_json());
  // The run file names the same passages.
  const auto run_table = (dir_ / "table.run").string(), run_stream = (dir_ / "stream.run").string();
  write_trec_run(run_table, want.ranking, want.query_rows, queries, table);
  write_trec_run(run_stream, got.ranking, got.query_rows, queries, stream);
  std::ifstream a(run_table), b(run_stream);
  const std::string want_run((std::istreambuf_iterator<char>(a)), {}), got_run((std::istreambuf_iterator<char>(b)), {});
  EXPECT_GT(want_run.size(), 1000u);
  EXPECT_EQ(got_run, want_run);
  // Encoded blocks of 64: the embeddings the table's give.
  const auto encode = EncodeCorpusOptions().batch_size(16).block_rows(64).progress(false);
  encode_corpus(model, numbers_tokenizer(), table, (dir_ / "table.emb").string(), encode);
  encode_corpus(model, numbers_tokenizer(), stream, (dir_ / "stream.emb").string(), encode);
  EmbeddingsReader from_table((dir_ / "table.emb").string()), from_stream((dir_ / "stream.emb").string());
  EXPECT_EQ(from_stream.ids(), from_table.ids());
  EXPECT_TRUE(torch::equal(from_stream.read_all(), from_table.read_all()));
}

}  // namespace
}  // namespace contaccum
