// Retrieval metrics: hand-computed cases, an independent Python
// implementation (tests/python/metrics_reference.py) on random graded
// judgements, judged_queries, and the TREC run writer.
#include "test_util.h"

#include <array>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

SearchResult ranking_of(const std::vector<std::vector<int64_t>>& rows) {
  const auto width = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
  SearchResult r;
  r.indices = torch::empty({static_cast<int64_t>(rows.size()), width}, torch::kLong);
  r.scores = torch::empty({static_cast<int64_t>(rows.size()), width}, torch::kFloat);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t j = 0; j < width; ++j) {
      r.indices[i][j] = rows[i][j];
      r.scores[i][j] = static_cast<float>(width - j);
    }
  }
  return r;
}

// Query row 5: relevant 7 (score 2), 9 and 4 (score 1), 3 judged irrelevant;
// retrieved at ranks 2 (7) and 4 (9). Query row 2: relevant 8 (score 3) at
// rank 1. Query row 9: only a score-0 judgement, so not evaluated.
const std::vector<Qrel> kQrels = {{5, 7, 2}, {5, 9, 1}, {5, 4, 1}, {5, 3, 0}, {2, 8, 3}, {9, 1, 0}};
const std::vector<std::vector<int64_t>> kRanking = {{3, 7, 1, 9}, {8, 0, 6, 2}, {1, 2, 3, 4}};
const std::vector<int64_t> kRows = {5, 2, 9};

TEST(Metrics, HandComputedGradedCase) {
  const auto options = MetricsOptions().top_k({1, 2, 4}).recall_k({2, 4}).mrr_k(10).ndcg_k(3).map_k(4);
  const auto m = compute_metrics(ranking_of(kRanking), kRows, kQrels, options);
  EXPECT_EQ(m.queries, 2);
  std::vector<std::string> names;
  for (const auto& kv : m.values) names.push_back(kv.first);
  EXPECT_EQ(names,
            (std::vector<std::string>{"top@1", "top@2", "top@4", "recall@2", "recall@4", "mrr@10", "ndcg@3", "map@4"}));
  EXPECT_DOUBLE_EQ(m.at("top@1"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("top@2"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("top@4"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("recall@2"), (1.0 / 3 + 1.0) / 2);
  EXPECT_DOUBLE_EQ(m.at("recall@4"), (2.0 / 3 + 1.0) / 2);
  EXPECT_DOUBLE_EQ(m.at("mrr@10"), (0.5 + 1.0) / 2);
  // nDCG@3 of row 5: DCG = 2/log2(3); ideal gains 2, 1, 1 -> 2/1 + 1/log2(3) + 1/2.
  const double ndcg5 = (2 / std::log2(3.0)) / (2.0 + 1 / std::log2(3.0) + 0.5);
  EXPECT_DOUBLE_EQ(m.at("ndcg@3"), (ndcg5 + 1.0) / 2);
  // AP@4 of row 5: precisions 1/2 (rank 2) and 2/4 (rank 4), over 3 relevant.
  EXPECT_DOUBLE_EQ(m.at("map@4"), ((0.5 + 0.5) / 3 + 1.0) / 2);

  // Cut-offs inside the ranking: nDCG@4 adds 1/log2(5); MRR@1 and MAP@2.
  const auto m2 = compute_metrics(ranking_of(kRanking), kRows, kQrels,
                                  MetricsOptions().top_k({}).recall_k({}).mrr_k(1).ndcg_k(4).map_k(2));
  EXPECT_EQ(m2.values.size(), 3u);
  EXPECT_DOUBLE_EQ(m2.at("mrr@1"), 0.5);
  EXPECT_DOUBLE_EQ(m2.at("ndcg@4"),
                   ((2 / std::log2(3.0) + 1 / std::log2(5.0)) / (2.0 + 1 / std::log2(3.0) + 0.5) + 1.0) / 2);
  EXPECT_DOUBLE_EQ(m2.at("map@2"), ((0.5 / 3) + 1.0) / 2);
}

TEST(Metrics, RepeatedPassagesAndJudgementsCountOnce) {
  // 8 listed twice must not score twice; (2, 8) judged 1 and 3 keeps 3, so
  // the single relevant passage has ideal gain 3 too.
  const std::vector<Qrel> qrels = {{2, 8, 1}, {2, 8, 3}, {2, 6, 1}};
  const auto m =
      compute_metrics(ranking_of({{8, 8, 6, 0}}), {2}, qrels, MetricsOptions().top_k({1}).recall_k({2}).ndcg_k(4));
  EXPECT_DOUBLE_EQ(m.at("recall@2"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("ndcg@4"), (3.0 + 1 / std::log2(4.0)) / (3.0 + 1 / std::log2(3.0)));
  EXPECT_DOUBLE_EQ(m.at("map@100"), (1.0 + 2.0 / 3) / 2);
}

TEST(Metrics, DefaultsNamesAtAndJson) {
  const auto m = compute_metrics(ranking_of(kRanking), kRows, kQrels);
  std::vector<std::string> names;
  for (const auto& kv : m.values) names.push_back(kv.first);
  EXPECT_EQ(names, (std::vector<std::string>{"top@1", "top@5", "top@20", "top@100", "recall@20", "recall@100", "mrr@10",
                                             "ndcg@10", "map@100"}));
  EXPECT_THAT([&] { m.at("top@3"); }, ThrowsMessage<c10::Error>(HasSubstr("no metric \"top@3\"")));
  const auto j = nlohmann::ordered_json::parse(m.to_json());
  ASSERT_EQ(j.size(), 10u);
  EXPECT_EQ(j.begin().key(), "queries");
  EXPECT_EQ(j["queries"].get<int64_t>(), 2);
  size_t i = 0;
  for (auto it = std::next(j.begin()); it != j.end(); ++it, ++i) {
    EXPECT_EQ(it.key(), m.values[i].first);
    EXPECT_EQ(it.value().get<double>(), m.values[i].second);  // round-trips exactly
  }
}

TEST(Metrics, JudgedQueriesAreSortedUniqueWithPositiveScore) {
  EXPECT_EQ(judged_queries(kQrels), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(judged_queries({{4, 1, 1}, {1, 0, 2}, {4, 2, 1}, {3, 3, 0}, {0, 1, -1}}), (std::vector<int64_t>{1, 4}));
  EXPECT_TRUE(judged_queries({}).empty());
}

TEST(Metrics, FirstJudgedQueriesKeepsEveryJudgementOfTheFirstN) {
  // Judged queries 1, 4, 6 (query 3 only has a zero score); file order kept.
  const std::vector<Qrel> qrels{{4, 1, 1}, {1, 0, 2}, {3, 3, 0}, {6, 2, 1}, {4, 2, 1}, {1, 5, 0}};
  auto queries = [](const std::vector<Qrel>& q) {
    std::vector<std::array<int64_t, 3>> out;
    for (const auto& x : q) out.push_back({x.query, x.passage, x.score});
    return out;
  };
  using Rows = std::vector<std::array<int64_t, 3>>;
  EXPECT_EQ(queries(first_judged_queries(qrels, 1)), (Rows{{1, 0, 2}, {1, 5, 0}}));
  EXPECT_EQ(queries(first_judged_queries(qrels, 2)), (Rows{{4, 1, 1}, {1, 0, 2}, {3, 3, 0}, {4, 2, 1}, {1, 5, 0}}));
  EXPECT_EQ(queries(first_judged_queries(qrels, 3)), queries(qrels));
  EXPECT_EQ(queries(first_judged_queries(qrels, 0)), queries(qrels));
  EXPECT_EQ(queries(first_judged_queries(qrels, 99)), queries(qrels));
  EXPECT_THAT([&] { first_judged_queries(qrels, -1); },
              ThrowsMessage<c10::Error>(HasSubstr("max_queries must be >= 0, got -1")));
}

TEST(Metrics, BadInputNamesOptionAndValue) {
  const auto r = ranking_of(kRanking);
  auto fails = [&](const MetricsOptions& o, const std::string& msg) {
    EXPECT_THAT([&] { compute_metrics(r, kRows, kQrels, o); }, ThrowsMessage<c10::Error>(HasSubstr(msg))) << msg;
  };
  fails(MetricsOptions().top_k({1, 0}), "MetricsOptions::top_k values must be > 0, got 0");
  fails(MetricsOptions().recall_k({-3}), "MetricsOptions::recall_k values must be > 0, got -3");
  fails(MetricsOptions().mrr_k(0), "MetricsOptions::mrr_k must be > 0, got 0");
  fails(MetricsOptions().ndcg_k(-1), "MetricsOptions::ndcg_k must be > 0, got -1");
  fails(MetricsOptions().map_k(0), "MetricsOptions::map_k must be > 0, got 0");
  EXPECT_THAT(
      [&] {
        compute_metrics(r, {5, 2}, kQrels);
      },
      ThrowsMessage<c10::Error>(HasSubstr("ranking has 3 rows but query_rows has 2")));
  EXPECT_THAT(
      [&] {
        compute_metrics(r, {5, -2, 9}, kQrels);
      },
      ThrowsMessage<c10::Error>(HasSubstr("query_rows[1] must be >= 0, got -2")));
  EXPECT_THAT(
      [&] {
        compute_metrics(r, kRows, {{5, 7, 1}, {-1, 3, 1}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("qrels[1] has a negative row (query -1, passage 3)")));
  EXPECT_THAT(
      [&] {
        compute_metrics(r, kRows, {{9, 1, 0}, {7, 1, 1}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("none of the 3 query rows has a relevant passage")));
  SearchResult bad;
  bad.indices = torch::zeros({3, 4}, torch::kFloat);
  EXPECT_THAT([&] { compute_metrics(bad, kRows, kQrels); },
              ThrowsMessage<c10::Error>(HasSubstr("ranking.indices must be [Q, k] int64, got [3, 4] Float")));
}

TEST(Metrics, MatchPythonReferenceOnRandomGradedJudgements) {
  if (std::system(CONTACCUM_TEST_PYTHON " -c 'import json, math' 2>/dev/null") != 0) {
    GTEST_FAIL() << CONTACCUM_TEST_PYTHON << " is not runnable: run scripts/install-deps.sh";
  }
  const fs::path dir = fs::temp_directory_path() / ("contaccum-metrics-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::mt19937_64 rng(20240611);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };

  struct MetricCase {
    SearchResult ranking;
    std::vector<int64_t> rows;
    std::vector<Qrel> qrels;
    MetricsOptions options;
  };
  std::vector<MetricCase> cases;
  nlohmann::json manifest = nlohmann::json::array();
  for (int c = 0; c < 12; ++c) {
    const int64_t num_queries = uniform(1, 80), corpus = uniform(1, 60),
                  width = uniform(1, std::min<int64_t>(corpus, 40));
    MetricCase cs;
    std::vector<std::vector<int64_t>> ranked;
    for (int64_t q = 0; q < num_queries; ++q) {
      cs.rows.push_back(uniform(0, 2 * num_queries));  // repeats and gaps in the table's rows
      std::vector<int64_t> perm(static_cast<size_t>(corpus));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      perm.resize(static_cast<size_t>(width));
      if (width > 1 && uniform(0, 9) == 0) perm[1] = perm[0];  // a repeated passage
      ranked.push_back(perm);
      // Graded judgements (0 = judged irrelevant, occasionally negative),
      // sometimes none relevant, sometimes a pair judged twice.
      const int64_t judged = uniform(0, 6);
      for (int64_t j = 0; j < judged; ++j) {
        cs.qrels.push_back({cs.rows.back(), uniform(0, corpus - 1), uniform(-1, 3)});
        if (uniform(0, 7) == 0) cs.qrels.push_back({cs.rows.back(), cs.qrels.back().passage, uniform(0, 3)});
      }
    }
    cs.qrels.push_back({cs.rows[0], ranked[0][0], 2});  // at least one evaluated query
    // Distinct cut-offs, some beyond the ranking's width.
    std::vector<int64_t> top, recall;
    for (int64_t i = 1; i <= width + 3; ++i) (uniform(0, 2) == 0 ? top : recall).push_back(i);
    cs.options = MetricsOptions()
                     .top_k(top)
                     .recall_k(recall)
                     .mrr_k(uniform(1, width + 2))
                     .ndcg_k(uniform(1, width + 2))
                     .map_k(uniform(1, width + 2));
    cs.ranking = ranking_of(ranked);
    nlohmann::json qrels = nlohmann::json::array();
    for (const auto& q : cs.qrels) qrels.push_back({q.query, q.passage, q.score});
    manifest.push_back({{"ranking", ranked},
                        {"query_rows", cs.rows},
                        {"qrels", qrels},
                        {"options",
                         {{"top_k", top},
                          {"recall_k", recall},
                          {"mrr_k", cs.options.mrr_k()},
                          {"ndcg_k", cs.options.ndcg_k()},
                          {"map_k", cs.options.map_k()}}}});
    cases.push_back(std::move(cs));
  }
  std::ofstream(dir / "cases.json") << manifest.dump();
  const std::string command =
      std::string(CONTACCUM_TEST_PYTHON) + " " + CONTACCUM_TEST_DIR + "/python/metrics_reference.py " + dir.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  nlohmann::json result;
  std::ifstream(dir / "result.json") >> result;
  ASSERT_EQ(result.size(), cases.size());
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto m = compute_metrics(cases[c].ranking, cases[c].rows, cases[c].qrels, cases[c].options);
    EXPECT_EQ(m.queries, result[c]["queries"].get<int64_t>()) << "case " << c;
    ASSERT_EQ(m.values.size() + 1, result[c].size()) << "case " << c;
    for (const auto& kv : m.values) {
      const double want = result[c][kv.first].get<double>();
      EXPECT_NEAR(kv.second, want, 1e-12) << "case " << c << " " << kv.first;
    }
  }
  fs::remove_all(dir);
}

class MetricsTrecRun : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("contaccum-trec-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* id : {"qa", "qb", "qc"}) queries_.add(id, "", std::string("text of ") + id);
    for (const char* id : {"d0", "d1", "d2", "d3"}) corpus_.add(id, "", "passage");
    ranking_.indices = torch::tensor({3, 0, 1, 2}, torch::kLong).view({2, 2});
    ranking_.scores = torch::tensor({2.5f, 0.1f, -1.0f, -7.25f}).view({2, 2});
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  size_t files_in_dir() const { return static_cast<size_t>(std::distance(fs::directory_iterator(dir_), {})); }
  fs::path dir_;
  TextTable queries_, corpus_;
  SearchResult ranking_;
};

TEST_F(MetricsTrecRun, WritesOneLinePerResultWithShortestScores) {
  const auto path = (dir_ / "run.trec").string();
  std::ofstream(path) << "old content that must be replaced\n";
  write_trec_run(path, ranking_, {2, 0}, queries_, corpus_, "bm25");
  EXPECT_EQ(read(path),
            "qc Q0 d3 1 2.5 bm25\n"
            "qc Q0 d0 2 0.1 bm25\n"
            "qa Q0 d1 1 -1 bm25\n"
            "qa Q0 d2 2 -7.25 bm25\n");
  EXPECT_EQ(files_in_dir(), 1u) << "a temporary file was left behind";
  // float64 scores print every digit they need to round-trip.
  ranking_.scores = torch::tensor({0.1, 1.0 / 3, 2.0, 1e-20}, torch::kDouble).view({2, 2});
  write_trec_run(path, ranking_, {0, 1}, queries_, corpus_);
  EXPECT_EQ(read(path),
            "qa Q0 d3 1 0.1 contaccum\n"
            "qa Q0 d0 2 0.3333333333333333 contaccum\n"
            "qb Q0 d1 1 2 contaccum\n"
            "qb Q0 d2 2 1e-20 contaccum\n");
}

TEST_F(MetricsTrecRun, FailuresNameThePathAndLeaveNoTemporaryFile) {
  const auto missing = (dir_ / "no-such-dir" / "run.trec").string();
  EXPECT_THAT(
      [&] {
        write_trec_run(missing, ranking_, {0, 1}, queries_, corpus_);
      },
      ThrowsMessage<c10::Error>(HasSubstr("cannot write " + missing)));
  // The target is a non-empty directory: the temporary file is written, the
  // rename fails, and the temporary file is removed again.
  const auto blocked = dir_ / "blocked";
  fs::create_directories(blocked / "inside");
  EXPECT_THAT(
      [&] {
        write_trec_run(blocked.string(), ranking_, {0, 1}, queries_, corpus_);
      },
      ThrowsMessage<c10::Error>(HasSubstr("cannot write " + blocked.string() + ": rename")));
  EXPECT_EQ(files_in_dir(), 1u);
  EXPECT_TRUE(fs::is_directory(blocked / "inside"));
}

TEST_F(MetricsTrecRun, RejectsRowsOutOfRange) {
  const auto path = (dir_ / "run.trec").string();
  EXPECT_THAT(
      [&] {
        write_trec_run(path, ranking_, {0, 3}, queries_, corpus_);
      },
      ThrowsMessage<c10::Error>(HasSubstr("query_rows[1] = 3 is out of range for a queries table of 3 rows")));
  ranking_.indices[1][1] = 4;
  EXPECT_THAT(
      [&] {
        write_trec_run(path, ranking_, {0, 1}, queries_, corpus_);
      },
      ThrowsMessage<c10::Error>(HasSubstr("holds corpus row 4, out of range for a corpus table of 4 rows")));
  ranking_.indices[1][1] = 2;
  EXPECT_THAT(
      [&] {
        write_trec_run(path, ranking_, {0, 1}, queries_, corpus_, "my run");
      },
      ThrowsMessage<c10::Error>(HasSubstr("run_name must be non-empty without whitespace, got \"my run\"")));
  ranking_.scores = torch::zeros({2, 3});
  EXPECT_THAT(
      [&] {
        write_trec_run(path, ranking_, {0, 1}, queries_, corpus_);
      },
      ThrowsMessage<c10::Error>(HasSubstr("ranking.scores must have the shape of ranking.indices [2, 2]")));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(files_in_dir(), 0u);
}

}  // namespace
}  // namespace contaccum
