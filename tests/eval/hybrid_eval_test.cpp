// The hybrid evaluation job as a library function: hand-built rankings whose
// reciprocal ranks are known, so every figure is checked against arithmetic.
#include "test_util.h"

#include <contaccum/eval/hybrid_eval.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

// A ranking of query rows `rows`, row r listing `docs[r]` best first.
EvalResult ranked(const std::vector<int64_t>& rows, const std::vector<std::vector<int64_t>>& docs) {
  const int64_t k = static_cast<int64_t>(docs.front().size());
  EvalResult out;
  out.query_rows = rows;
  out.ranking.indices = torch::empty({static_cast<int64_t>(rows.size()), k}, torch::kLong);
  out.ranking.scores = torch::empty({static_cast<int64_t>(rows.size()), k}, torch::kDouble);
  for (size_t r = 0; r < docs.size(); ++r) {
    for (int64_t i = 0; i < k; ++i) {
      out.ranking.indices[r][i] = docs[r][i];
      out.ranking.scores[r][i] = static_cast<double>(k - i);  // positive: BM25 counts it as a match
    }
  }
  return out;
}

// Queries 0 and 1 are reported, 2 and 3 tune. Relevant: q0 -> doc 0, q1 -> 1,
// q2 -> 2, q3 -> 3.
struct Case {
  std::vector<Qrel> reported = {{0, 0, 1}, {1, 1, 1}};
  std::vector<Qrel> tune = {{2, 2, 1}, {3, 3, 1}};
  // Dense: q0's passage 2nd (RR 1/2), q1's 1st (1): MRR 0.75. Perfect on
  // the tuning queries.
  EvalResult dense = ranked({0, 1, 2, 3}, {{4, 0, 1, 2}, {1, 0, 2, 3}, {2, 0, 1, 3}, {3, 0, 1, 2}});
  // BM25: q0's 1st (1), q1's 3rd (1/3): MRR 2/3; its tuning passages last.
  EvalResult bm25 = ranked({0, 1, 2, 3}, {{0, 4, 2, 3}, {0, 2, 1, 3}, {0, 1, 3, 2}, {0, 1, 2, 3}});
};

TEST(HybridEval, ReportsTheFusionBesideBothRankingsOfTheReportedQueries) {
  Case c;
  const auto linear = FusionOptions().method(FusionMethod::Linear).k(4);
  const auto dense_only = evaluate_hybrid(c.dense, c.bm25, c.reported, {}, FusionOptions(linear).weight(1.0));
  EXPECT_NEAR(dense_only.dense.at("mrr@10"), 0.75, 1e-15);
  EXPECT_NEAR(dense_only.bm25.at("mrr@10"), (1.0 + 1.0 / 3) / 2, 1e-15);
  EXPECT_NEAR(dense_only.fused.metrics.at("mrr@10"), 0.75, 1e-15) << "weight 1: the dense order";
  EXPECT_EQ(dense_only.fused.query_rows, (std::vector<int64_t>{0, 1}));
  EXPECT_FALSE(dense_only.tuned);
  EXPECT_EQ(dense_only.weight, 1.0);
  const auto bm25_only = evaluate_hybrid(c.dense, c.bm25, c.reported, {}, FusionOptions(linear).weight(0.0));
  EXPECT_NEAR(bm25_only.fused.metrics.at("mrr@10"), (1.0 + 1.0 / 3) / 2, 1e-15) << "weight 0: the BM25 order";
}

TEST(HybridEval, TunesTheWeightOnTheTuningQueriesOnly) {
  Case c;
  // Linear fusion of min-max scores (4, 3, 2, 1 -> 1, 2/3, 1/3, 0): a tuning
  // query's passage (dense 1st, BM25 4th) scores w against doc 0's
  // 2w/3 + (1 - w), so it leads for w > 3/4: the lowest such weight of the
  // grid is 0.8.
  const auto tuned = evaluate_hybrid(c.dense, c.bm25, c.reported, c.tune, FusionOptions().method(FusionMethod::Linear));
  EXPECT_TRUE(tuned.tuned);
  EXPECT_NEAR(tuned.weight, 0.8, 1e-12);
  // At 0.8, q0: doc 4 (0.8 + 0.2 * 2/3) beats doc 0 (0.8 * 2/3 + 0.2): RR
  // 1/2; q1: doc 1 (0.8 + 0.2/3) beats doc 0 (0.8 * 2/3 + 0.2): RR 1.
  EXPECT_NEAR(tuned.fused.metrics.at("mrr@10"), 0.75, 1e-15);
  EXPECT_EQ(tuned.fused.query_rows, (std::vector<int64_t>{0, 1})) << "tuning queries are not reported";
}

TEST(HybridEval, RefusesTuningOnReportedQueriesAndRankingsThatMissAQuery) {
  Case c;
  const std::vector<Qrel> overlapping = {{1, 1, 1}, {2, 2, 1}};
  EXPECT_THAT(test::error_of([&] { evaluate_hybrid(c.dense, c.bm25, c.reported, overlapping, FusionOptions()); }),
              HasSubstr("the tuning qrels share 1 judged queries with the reported ones"));
  const auto partial = ranked({0, 2, 3}, {{4, 0, 1, 2}, {0, 1, 3, 2}, {0, 1, 2, 3}});
  EXPECT_THAT(test::error_of([&] { evaluate_hybrid(partial, c.bm25, c.reported, {}, FusionOptions()); }),
              HasSubstr("the dense ranking has no row for query row 1"));
}

}  // namespace
}  // namespace contaccum
