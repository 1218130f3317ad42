// InfoNCE against a closed-form oracle written with Eigen in float64: the loss
// and its gradients with respect to queries and passages are derived by hand
// (softmax minus one-hot, chained through the similarity), independently of
// the block layout the library uses.
#include "info_nce_oracle.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace contaccum {
namespace {

using test::Mat;
using test::oracle;
using test::to_eigen;

struct LossCase {
  int64_t n, h, m, bank_group;
  bool cosine;
  double tau;
  bool query_bank, bank_as_negatives;
  friend void PrintTo(const LossCase& c, std::ostream* os) {
    *os << "n" << c.n << "_h" << c.h << "_m" << c.m << "_g" << c.bank_group << (c.cosine ? "_cos" : "_dot") << "_tau"
        << c.tau << (c.query_bank ? "_qbank" : "") << (c.bank_as_negatives ? "" : "_ownpositive");
  }
};

class InfoNCEOracle : public ::testing::TestWithParam<LossCase> {};

// The ways the loss can be computed: through the whole score matrix, in
// default tiles (one tile at these sizes), and in tiles of 2 x 3 so that
// every row block and column kind spans several tiles.
std::vector<std::pair<std::string, InfoNCEOptions>> computations(const LossCase& c) {
  const auto base = InfoNCEOptions().similarity(c.cosine ? Similarity::Cosine : Similarity::Dot).temperature(c.tau);
  return {{"untiled", InfoNCEOptions(base).tiled(false)},
          {"tiled", base},
          {"tiles of 2 x 3", InfoNCEOptions(base).tile_rows(2).tile_columns(3)}};
}

TEST_P(InfoNCEOracle, LossAndGradientsMatchClosedForm) {
  const LossCase c = GetParam();
  torch::manual_seed(1000 + c.n * 31 + c.h * 7 + c.m);
  const int64_t d = 5;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto q = torch::randn({c.n, d}, opts).requires_grad_(true);
  auto p = torch::randn({c.n, 1 + c.h, d}, opts).requires_grad_(true);
  InfoNCEBank bank;
  if (c.m > 0) {
    bank.passages = torch::randn({c.m, c.bank_group, d}, opts);
    if (c.query_bank) bank.queries = torch::randn({c.m, d}, opts);
    bank.passages_as_negatives = c.bank_as_negatives;
  }
  const auto want = oracle(q.detach(), p.detach(), bank.queries, bank.passages, c.cosine, c.tau, c.bank_as_negatives);
  EXPECT_GT(want.grad_p.cwiseAbs().maxCoeff(), 1e-6);
  for (const auto& [name, options] : computations(c)) {
    SCOPED_TRACE(name);
    q.mutable_grad() = torch::Tensor();
    p.mutable_grad() = torch::Tensor();
    const auto result = info_nce(q, p, options, bank);
    result.loss.backward();
    EXPECT_NEAR(result.loss.item<double>(), want.loss, 1e-12 * std::abs(want.loss));
    const Mat gq = to_eigen(q.grad()), gp = to_eigen(p.grad().reshape({c.n * (1 + c.h), d}));
    EXPECT_LE((gq - want.grad_q).cwiseAbs().maxCoeff(), 1e-12) << "query gradient";
    EXPECT_LE((gp - want.grad_p).cwiseAbs().maxCoeff(), 1e-12) << "passage gradient";

    const int64_t bank_cols = c.bank_as_negatives ? c.m * c.bank_group : 0;
    EXPECT_EQ(result.negatives_per_query, c.n * (1 + c.h) - 1 + bank_cols);
    EXPECT_FALSE(result.scores.defined());
    const auto scores = info_nce(q, p, InfoNCEOptions(options).return_scores(true), bank).scores;
    EXPECT_EQ(scores.size(0), c.n);
    EXPECT_EQ(scores.size(1), (c.n + c.m) + c.n * c.h + c.m * (c.bank_group - 1));
    EXPECT_FALSE(scores.requires_grad());

    // Cosine banks stored with unit rows (as the strategies keep them) and
    // marked so are scored as they are: the same loss and gradients.
    if (c.cosine && c.m > 0) {
      auto unit = [](const torch::Tensor& t) { return t.defined() ? t / t.norm(2, {-1}, /*keepdim=*/true) : t; };
      InfoNCEBank unit_bank = bank;
      unit_bank.queries = unit(bank.queries);
      unit_bank.passages = unit(bank.passages);
      unit_bank.normalized = true;
      q.grad().zero_();
      p.grad().zero_();
      const auto unit_loss = info_nce(q, p, options, unit_bank).loss;
      unit_loss.backward();
      EXPECT_NEAR(unit_loss.item<double>(), want.loss, 1e-12 * std::abs(want.loss)) << "unit-row bank";
      EXPECT_LE((to_eigen(q.grad()) - want.grad_q).cwiseAbs().maxCoeff(), 1e-12) << "unit-row bank";
      EXPECT_LE((to_eigen(p.grad().reshape({c.n * (1 + c.h), d})) - want.grad_p).cwiseAbs().maxCoeff(), 1e-12);
      // The flag is read: on rows that are not unit, it changes the loss.
      InfoNCEBank not_unit = bank;
      not_unit.normalized = true;
      EXPECT_GT(std::abs(info_nce(q, p, options, not_unit).loss.item<double>() - want.loss), 1e-6);
    }

    // The banked rows' log-sum-exp over the bank, handed in precomputed (as
    // the strategies do), gives the same loss and gradients.
    if (!c.query_bank) continue;
    q.grad().zero_();
    p.grad().zero_();
    InfoNCEBank given = bank;
    given.row_logsumexp = bank_row_logsumexp(bank.queries, bank.passages, options, /*rows_per_block=*/2,
                                             /*columns_per_block=*/3);
    const auto again = info_nce(q, p, options, given);
    again.loss.backward();
    EXPECT_NEAR(again.loss.item<double>(), want.loss, 1e-12 * std::abs(want.loss));
    EXPECT_LE((to_eigen(q.grad()) - want.grad_q).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_LE((to_eigen(p.grad().reshape({c.n * (1 + c.h), d})) - want.grad_p).cwiseAbs().maxCoeff(), 1e-12);
    if (c.bank_as_negatives) {
      // And a wrong one is used, not ignored.
      given.row_logsumexp = given.row_logsumexp + 1.0;
      EXPECT_GT(std::abs(info_nce(q, p, options, given).loss.item<double>() - want.loss), 1e-3);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, InfoNCEOracle,
                         ::testing::Values(LossCase{6, 0, 0, 1, false, 1.0, false, true},  // in-batch only
                                           LossCase{5, 2, 0, 1, false, 1.0, false, true},  // hard negatives
                                           LossCase{4, 1, 0, 1, true, 0.05, false, true},  // cosine + temperature
                                           LossCase{4, 1, 7, 2, false, 1.0, true, true},   // ContAccum: both banks
                                           LossCase{3, 1, 6, 2, true, 0.1, true, true},    // both banks, cosine
                                           LossCase{4, 1, 5, 2, false, 0.5, false, true},  // passage bank only
                                           LossCase{4, 2, 5, 1, false, 1.0, true, true},  // bank without hard negatives
                                           LossCase{4, 1, 5, 1, false, 1.0, true,
                                                    false},  // query bank, bank passages not negatives
                                           LossCase{1, 0, 3, 1, true, 2.0, true, true}));  // single current row

TEST(InfoNCE, ScoresFollowTheSpecLayout) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto q = torch::randn({2, 3}, opts), p = torch::randn({2, 2, 3}, opts);
  InfoNCEBank bank{torch::randn({1, 3}, opts), torch::randn({1, 2, 3}, opts), true, {}};
  const auto s = info_nce(q, p, InfoNCEOptions().temperature(0.5).return_scores(true), bank).scores;
  // Columns: p0+, p1+, b0+, p0-, p1-, b0-; rows: the current queries only.
  const auto cols = torch::stack({p[0][0], p[1][0], bank.passages[0][0], p[0][1], p[1][1], bank.passages[0][1]});
  EXPECT_TRUE(torch::allclose(s, q.matmul(cols.t()) / 0.5, 1e-14, 1e-14));
}

TEST(InfoNCE, ModuleMatchesFunctional) {
  auto q = torch::randn({3, 4}), p = torch::randn({3, 2, 4});
  InfoNCE loss(InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.2));
  EXPECT_TRUE(torch::equal(loss(q, p), info_nce(q, p, loss->options).loss));
}

// The module twin carries its options through clone() and gives the
// functional form's loss and gradients, banks included.
TEST(InfoNCE, ModuleWithBanksGivesTheFunctionalGradients) {
  const auto options = InfoNCEOptions().similarity(Similarity::Dot).temperature(0.3);
  auto q = torch::randn({4, 5}, torch::kDouble).requires_grad_(true);
  auto p = torch::randn({4, 2, 5}, torch::kDouble).requires_grad_(true);
  const InfoNCEBank bank{torch::randn({3, 5}, torch::kDouble), torch::randn({3, 2, 5}, torch::kDouble), true, {}};
  info_nce(q, p, options, bank).loss.backward();
  const auto want_q = q.grad().clone(), want_p = p.grad().clone();
  q.grad().zero_();
  p.grad().zero_();

  InfoNCE original(options);
  auto module = std::dynamic_pointer_cast<InfoNCEImpl>(original->clone());
  ASSERT_TRUE(module);
  EXPECT_EQ(module->options.temperature(), 0.3);
  EXPECT_TRUE(module->parameters().empty());
  const auto loss = module->forward(q, p, bank);
  EXPECT_TRUE(torch::equal(loss, info_nce(q.detach(), p.detach(), options, bank).loss));
  loss.backward();
  EXPECT_TRUE(torch::equal(q.grad(), want_q));
  EXPECT_TRUE(torch::equal(p.grad(), want_p));
  EXPECT_THROW(InfoNCE(InfoNCEOptions().temperature(-1.0)), c10::Error);
}

TEST(InfoNCE, RejectsInconsistentInputs) {
  auto q = torch::randn({3, 4}), p = torch::randn({3, 2, 4});
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message([&] { info_nce(q, p, InfoNCEOptions().temperature(0.0)); }),
              ::testing::HasSubstr("temperature must be > 0, got 0"));
  EXPECT_THAT(message([&] { info_nce(q, p, InfoNCEOptions().tile_rows(0)); }),
              ::testing::HasSubstr("InfoNCEOptions::tile_rows must be > 0, got 0"));
  EXPECT_THAT(message([&] { info_nce(q, p, InfoNCEOptions().tile_columns(-2)); }),
              ::testing::HasSubstr("InfoNCEOptions::tile_columns must be > 0, got -2"));
  EXPECT_THAT(message([&] { info_nce(q, torch::randn({2, 2, 4})); }), ::testing::HasSubstr("3 queries but 2"));
  EXPECT_THAT(message([&] {
                info_nce(q, torch::randn({3, 2, 5}));
              }),
              ::testing::HasSubstr("passage dim 5 != query dim 4"));
  EXPECT_THAT(message([&] {
                info_nce(q, p, {}, InfoNCEBank{torch::randn({2, 4}), torch::randn({3, 2, 4}), true, {}});
              }),
              ::testing::HasSubstr("bank.queries has 2 rows but bank.passages has 3"));
  EXPECT_THAT(message([&] {
                info_nce(q, p, {}, InfoNCEBank{{}, torch::randn({3, 2, 6}), true, {}});
              }),
              ::testing::HasSubstr("bank.passages dim 6"));
  InfoNCEBank wrong_lse{torch::randn({3, 4}), torch::randn({3, 2, 4}), true, torch::zeros({2})};
  EXPECT_THAT(message([&] { info_nce(q, p, {}, wrong_lse); }),
              ::testing::HasSubstr("bank.row_logsumexp must be [3] (one per banked query), got [2]"));
}

// Loss and gradients of `info_nce` on fresh inputs (both banks, cosine).
struct Computed {
  double loss;
  torch::Tensor grad_q, grad_p;
};

Computed compute(const torch::Tensor& q0, const torch::Tensor& p0, const InfoNCEBank& bank,
                 const InfoNCEOptions& options) {
  auto q = q0.detach().clone().requires_grad_(true), p = p0.detach().clone().requires_grad_(true);
  const auto loss = info_nce(q, p, options, bank).loss;
  loss.backward();
  return {loss.item<double>(), q.grad().to(torch::kDouble), p.grad().to(torch::kDouble)};
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// In float32 the tiled loss is the untiled one up to rounding: the loss within
// 1e-6 relative, and both as close to the float64 computation as each other.
TEST(InfoNCETiled, Float32MatchesUntiledWithinRounding) {
  torch::manual_seed(77);
  const int64_t n = 300, g = 2, m = 700, d = 48;
  auto q = torch::randn({n, d}), p = torch::randn({n, g, d});
  const InfoNCEBank bank{torch::randn({m, d}), torch::randn({m, g, d}), true, {}};
  const InfoNCEBank bank64{bank.queries.to(torch::kDouble), bank.passages.to(torch::kDouble), true, {}};
  const auto base = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05);
  const auto want = compute(q.to(torch::kDouble), p.to(torch::kDouble), bank64, InfoNCEOptions(base).tiled(false));
  const auto untiled = compute(q, p, bank, InfoNCEOptions(base).tiled(false));
  const auto tiled = compute(q, p, bank, InfoNCEOptions(base).tile_rows(64).tile_columns(100));
  EXPECT_NEAR(tiled.loss, untiled.loss, 1e-6 * std::abs(untiled.loss));
  EXPECT_NEAR(tiled.loss, want.loss, 1e-6 * std::abs(want.loss));
  const double scale_q = max_abs(want.grad_q), scale_p = max_abs(want.grad_p);
  const double untiled_error =
      std::max(max_abs(untiled.grad_q - want.grad_q) / scale_q, max_abs(untiled.grad_p - want.grad_p) / scale_p);
  const double tiled_error = std::max(max_abs(tiled.grad_q - want.grad_q) / scale_q,  //
                                      max_abs(tiled.grad_p - want.grad_p) / scale_p);
  EXPECT_LE(tiled_error, std::max(2.0 * untiled_error, 1e-6)) << "untiled error " << untiled_error;
  EXPECT_LE(max_abs(tiled.grad_q - untiled.grad_q) / scale_q, 1e-5);
  EXPECT_LE(max_abs(tiled.grad_p - untiled.grad_p) / scale_p, 1e-5);
}

// Banks stored in bf16 (`bank_dtype`) are read a tile at a time as their
// float32 values: with dot products the loss and gradients of the float32
// copy of the same banks, bit for bit (cosine: to float rounding), and no
// float32 copy of the passage bank (the loss's peak memory stays within half
// the banks' float32 bytes of the float32 banks' peak). Untiled, they are
// upcast whole: the same numbers up to the tiling's rounding.
TEST(InfoNCETiled, Bf16BanksAreReadATileAtATimeAsTheirFloat32Values) {
  torch::manual_seed(81);
  const int64_t n = 32, g = 2, m = 16384, d = 64;
  const auto q = torch::randn({n, d}), p = torch::randn({n, g, d});
  const auto stored_q = torch::randn({m, d}).to(torch::kBFloat16),
             stored_p = torch::randn({m, g, d}).to(torch::kBFloat16);
  const double bank_bytes = static_cast<double>(m * (g + 1) * d * sizeof(float));
  for (const auto similarity : {Similarity::Dot, Similarity::Cosine}) {
    const auto options = InfoNCEOptions().similarity(similarity).temperature(0.05);
    // The banked rows' log-sum-exps come from the score cache, as in training.
    const auto lse = bank_row_logsumexp(stored_q.to(torch::kFloat), stored_p.to(torch::kFloat), options);
    const InfoNCEBank bf16{stored_q, stored_p, true, lse};
    const InfoNCEBank fp32{stored_q.to(torch::kFloat), stored_p.to(torch::kFloat), true, lse};
    AllocationCounter counter;
    const auto got = compute(q, p, bf16, options);
    const double got_peak = static_cast<double>(counter.counts().peak_bytes);
    counter.reset();
    const auto want = compute(q, p, fp32, options);
    const double want_peak = static_cast<double>(counter.counts().peak_bytes);
    if (similarity == Similarity::Dot) {
      EXPECT_EQ(got.loss, want.loss);
      EXPECT_TRUE(torch::equal(got.grad_q, want.grad_q));
      EXPECT_TRUE(torch::equal(got.grad_p, want.grad_p));
    } else {
      // The bank columns' norms are taken from bf16 storage (float
      // accumulation): float rounding, not bit for bit.
      EXPECT_NEAR(got.loss, want.loss, 1e-6 * std::abs(want.loss));
      EXPECT_LE(max_abs(got.grad_p - want.grad_p), 1e-5 * max_abs(want.grad_p));
      EXPECT_LE(max_abs(got.grad_q - want.grad_q), 1e-5 * max_abs(want.grad_q));
    }
    // A whole float32 copy of the passage bank alone would be 2/3 of these.
    EXPECT_LT(got_peak, want_peak + 0.5 * bank_bytes) << enum_name(similarity);
    const auto untiled = compute(q, p, bf16, InfoNCEOptions(options).tiled(false));
    EXPECT_NEAR(untiled.loss, want.loss, 1e-6 * std::abs(want.loss)) << enum_name(similarity);
  }
}

// Scores that fit in one tile's memory are kept from the forward pass, and
// the backward pass that reads them gives the numbers of the one that scores
// again, bit for bit: the same tiles (16 rows, 32 columns) either way, kept
// with the default tiles, recomputed with a 16 x 32 tile (512 floats, fewer
// than the 8 x (16 + 32) + 16 x 16 = 640 scores).
TEST(InfoNCETiled, KeptScoresGiveTheRecomputedNumbersBitForBit) {
  torch::manual_seed(79);
  const int64_t n = 8, g = 2, m = 16, d = 12;
  const auto q = torch::randn({n, d}), p = torch::randn({n, g, d});
  const InfoNCEBank bank{torch::randn({m, d}), torch::randn({m, g, d}), true, torch::randn({m})};
  const auto base = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.07);
  auto run = [&](const InfoNCEOptions& options, int64_t* peak) {
    AllocationCounter counter;
    auto result = compute(q, p, bank, options);
    *peak = counter.counts().peak_bytes;
    return result;
  };
  int64_t kept_peak = 0, recomputed_peak = 0;
  const auto kept = run(base, &kept_peak);
  const auto recomputed = run(InfoNCEOptions(base).tile_rows(16).tile_columns(32), &recomputed_peak);
  EXPECT_EQ(kept.loss, recomputed.loss);
  EXPECT_TRUE(torch::equal(kept.grad_q, recomputed.grad_q));
  EXPECT_TRUE(torch::equal(kept.grad_p, recomputed.grad_p));
  // The kept scores (640 floats) were held in the place of the recomputing
  // run's tile (512 floats), and freed with the backward pass: more memory at
  // the peak, but no more than the scores themselves.
  EXPECT_GT(kept_peak, recomputed_peak);
  EXPECT_LE(kept_peak - recomputed_peak, 640 * static_cast<int64_t>(sizeof(float)));
}

// A second backward pass through the same graph (retain_graph) cannot read the
// kept scores, which the first one overwrote: it scores again and adds the
// same gradients once more.
TEST(InfoNCETiled, ASecondBackwardPassThroughKeptScoresAddsTheSameGradients) {
  torch::manual_seed(80);
  const int64_t n = 8, g = 2, m = 16, d = 12;
  auto q = torch::randn({n, d}).requires_grad_(true), p = torch::randn({n, g, d}).requires_grad_(true);
  const InfoNCEBank bank{torch::randn({m, d}), torch::randn({m, g, d}), true, torch::randn({m})};
  const auto loss = info_nce(q, p, InfoNCEOptions().similarity(Similarity::Cosine), bank).loss;
  loss.backward({}, /*retain_graph=*/true);
  const auto once_q = q.grad().clone(), once_p = p.grad().clone();
  loss.backward();
  EXPECT_LE((q.grad() - 2 * once_q).abs().max().item<double>(), 1e-6 * once_q.abs().max().item<double>());
  EXPECT_LE((p.grad() - 2 * once_p).abs().max().item<double>(), 1e-6 * once_p.abs().max().item<double>());
}

// The tiled loss's working memory (forward and backward) is its inputs'
// gradients and a tile, whatever the number of rows and bank columns; the
// untiled one holds score-matrix-sized tensors.
TEST(InfoNCETiled, WorkingMemoryIsOneTileWhateverTheBatchAndBank) {
  torch::manual_seed(78);
  const int64_t d = 32, g = 2, tile_rows = 128, tile_columns = 256;
  const auto options = InfoNCEOptions().similarity(Similarity::Dot).tile_rows(tile_rows).tile_columns(tile_columns);
  auto peak = [&](int64_t n, int64_t m, bool tiled) {
    auto q = torch::randn({n, d}).requires_grad_(true), p = torch::randn({n, g, d}).requires_grad_(true);
    const InfoNCEBank bank{torch::randn({m, d}), torch::randn({m, g, d}), true, torch::zeros({m})};
    AllocationCounter counter;
    info_nce(q, p, InfoNCEOptions(options).tiled(tiled), bank).loss.backward();
    return counter.counts().peak_bytes;
  };
  for (const auto& [n, m] : std::vector<std::pair<int64_t, int64_t>>{{512, 1024}, {1024, 4096}, {2048, 8192}}) {
    SCOPED_TRACE("n " + std::to_string(n) + " m " + std::to_string(m));
    const int64_t floats = sizeof(float);
    const int64_t tile = tile_rows * tile_columns * floats;
    // Gradients of q and p, a row-sized temporary or two, the banked rows'
    // targets (an [m, d] product), and the tile, in the forward and backward.
    const int64_t budget = (3 * n * d + n * g * d + m * d) * floats + 2 * tile + (64 << 10);
    EXPECT_LE(peak(n, m, true), budget);
    const int64_t score_matrix = n * (n * g + m * g) * floats;
    EXPECT_GE(peak(n, m, false), score_matrix);
  }
}

}  // namespace
}  // namespace contaccum
