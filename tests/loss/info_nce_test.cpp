// InfoNCE against a closed-form oracle written with Eigen in float64: the loss
// and its gradients with respect to queries and passages are derived by hand
// (softmax minus one-hot, chained through the similarity), independently of
// the block layout the library uses.
#include "test_util.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace contaccum {
namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXd;

Mat to_eigen(const torch::Tensor& t2d) {
  auto c = t2d.to(torch::kDouble).contiguous();
  return Eigen::Map<const Mat>(c.data_ptr<double>(), c.size(0), c.size(1));
}

struct Oracle {
  double loss = 0.0;
  Mat grad_q;  // [n, d]
  Mat grad_p;  // [n * g, d], example-major like the input
};

// One candidate column: a vector and where its gradient goes (-1: constant).
struct Column {
  Vec v;
  int64_t grad_row = -1;  // row of grad_p
  bool bank = false;
  int64_t bank_index = -1;
  bool positive = false;
  int64_t flat = -1;  // bank columns: index among the bank's vectors (j * g_b + k)
};

// Identities for masking (empty: none): each current passage vector's and
// banked passage vector's, and each current / banked query's positives.
struct OracleIds {
  std::vector<int64_t> passages, bank_passages;
  std::vector<std::vector<int64_t>> positives, bank_positives;
  bool empty() const { return passages.empty(); }
};

Oracle oracle(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& bq, const torch::Tensor& bp,
              bool cosine, double tau, bool bank_as_negatives, const OracleIds& ids = {}) {
  const int64_t n = q.size(0), g = p.size(1), d = q.size(1);
  const Mat Q = to_eigen(q), P = to_eigen(p.reshape({n * g, d}));
  const int64_t m = bp.defined() ? bp.size(0) : 0, gb = bp.defined() ? bp.size(1) : 0;
  const Mat BP = m ? to_eigen(bp.reshape({m * gb, d})) : Mat(0, d);
  const int64_t mq = bq.defined() ? bq.size(0) : 0;
  const Mat BQ = mq ? to_eigen(bq) : Mat(0, d);

  // Spec layout: current positives, bank positives, current hard negatives
  // (example-major), bank hard negatives.
  std::vector<Column> cols;
  for (int64_t i = 0; i < n; ++i) cols.push_back({P.row(i * g).transpose(), i * g, false, -1, true});
  for (int64_t j = 0; j < m; ++j) cols.push_back({BP.row(j * gb).transpose(), -1, true, j, true, j * gb});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 1; k < g; ++k) cols.push_back({P.row(i * g + k).transpose(), i * g + k, false, -1, false});
  for (int64_t j = 0; j < m; ++j)
    for (int64_t k = 1; k < gb; ++k) cols.push_back({BP.row(j * gb + k).transpose(), -1, true, j, false, j * gb + k});

  const int64_t R = n + mq, C = static_cast<int64_t>(cols.size());
  auto sim = [&](const Vec& a, const Vec& b) { return cosine ? a.dot(b) / (a.norm() * b.norm()) : a.dot(b); };
  // d sim(a, b) / d a.
  auto dsim = [&](const Vec& a, const Vec& b) -> Vec {
    if (!cosine) return b;
    const double na = a.norm(), nb = b.norm();
    const double c = a.dot(b) / (na * nb);
    return (b / nb - c * a / na) / na;
  };
  Oracle out;
  out.grad_q = Mat::Zero(n, d);
  out.grad_p = Mat::Zero(n * g, d);
  // Row r's positives (empty without ids), and whether column c is one of
  // them other than the row's target (column r, or n + j for banked row j).
  auto masked = [&](int64_t r, int64_t c) {
    if (ids.empty()) return false;
    const int64_t target = r < n ? r : n + (r - n);
    const auto& pos = r < n ? ids.positives[r] : ids.bank_positives[r - n];
    const int64_t id = cols[c].bank ? ids.bank_passages[cols[c].flat] : ids.passages[cols[c].grad_row];
    return c != target && std::find(pos.begin(), pos.end(), id) != pos.end();
  };
  for (int64_t r = 0; r < R; ++r) {
    const bool bank_row = r >= n;
    const Vec row = bank_row ? Vec(BQ.row(r - n).transpose()) : Vec(Q.row(r).transpose());
    std::vector<double> s(C, -std::numeric_limits<double>::infinity());
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < C; ++c) {
      const bool allowed =
          !cols[c].bank || bank_as_negatives || (bank_row && cols[c].positive && cols[c].bank_index == r - n);
      if (!allowed || masked(r, c)) continue;
      s[c] = sim(row, cols[c].v) / tau;
      mx = std::max(mx, s[c]);
    }
    double z = 0.0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(s[c] - mx);
    const double lse = mx + std::log(z);
    out.loss += (lse - s[r]) / R;
    for (int64_t c = 0; c < C; ++c) {
      const double coef = ((std::isinf(s[c]) ? 0.0 : std::exp(s[c] - lse)) - (c == r ? 1.0 : 0.0)) / (R * tau);
      if (coef == 0.0) continue;
      if (!bank_row) out.grad_q.row(r) += coef * dsim(row, cols[c].v).transpose();
      if (cols[c].grad_row >= 0) out.grad_p.row(cols[c].grad_row) += coef * dsim(cols[c].v, row).transpose();
    }
  }
  return out;
}

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

namespace contaccum {
namespace {

// Identities drawn from a small pool, so that every kind of false negative
// occurs: other examples' positives, hard negatives and banked passages that
// are a current query's positive, and current passages that are a banked
// query's. Each query's positives hold its target's identity and one more.
struct Collisions {
  InfoNCEIds ids;
  torch::Tensor bank_passage_ids, bank_positive_ids;
  OracleIds oracle;
};

Collisions colliding_ids(int64_t n, int64_t g, int64_t m, int64_t gb, int64_t pool) {
  Collisions c;
  c.ids.passages = torch::randint(pool, {n, g}, torch::kLong);
  c.bank_passage_ids = torch::randint(pool, {m, gb}, torch::kLong);
  auto positives = [pool](const torch::Tensor& targets) {
    auto out = torch::cat({targets.unsqueeze(1), torch::randint(pool, {targets.size(0), 1}, torch::kLong)}, 1);
    out.select(1, 1).masked_fill_(out.select(1, 1).eq(out.select(1, 0)), -1);  // some rows: one positive
    return out;
  };
  c.ids.positives = positives(c.ids.passages.select(1, 0));
  c.bank_positive_ids = positives(c.bank_passage_ids.select(1, 0));
  auto as_vector = [](const torch::Tensor& t) {
    auto flat = t.reshape({-1}).contiguous();
    return std::vector<int64_t>(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  };
  auto as_lists = [&](const torch::Tensor& t) {
    std::vector<std::vector<int64_t>> out;
    for (int64_t i = 0; i < t.size(0); ++i) out.push_back(as_vector(t[i]));
    return out;
  };
  c.oracle.passages = as_vector(c.ids.passages);
  c.oracle.bank_passages = as_vector(c.bank_passage_ids);
  c.oracle.positives = as_lists(c.ids.positives);
  c.oracle.bank_positives = as_lists(c.bank_positive_ids);
  return c;
}

struct MaskCase {
  bool cosine, query_bank;
};

class InfoNCEMaskedOracle : public ::testing::TestWithParam<MaskCase> {};

TEST_P(InfoNCEMaskedOracle, MaskedLossAndGradientsMatchClosedForm) {
  const auto mc = GetParam();
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    torch::manual_seed(7000 + trial + (mc.cosine ? 100 : 0) + (mc.query_bank ? 200 : 0));
    const int64_t n = 5, g = 3, m = 6, gb = 3, d = 4;
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    auto q = torch::randn({n, d}, opts).requires_grad_(true);
    auto p = torch::randn({n, g, d}, opts).requires_grad_(true);
    const auto c = colliding_ids(n, g, m, gb, 7);
    InfoNCEBank bank;
    bank.passages = torch::randn({m, gb, d}, opts);
    bank.passage_ids = c.bank_passage_ids;
    if (mc.query_bank) {
      bank.queries = torch::randn({m, d}, opts);
      bank.query_positive_ids = c.bank_positive_ids;
    }
    OracleIds oracle_ids = c.oracle;
    if (!mc.query_bank) oracle_ids.bank_positives.assign(m, {});
    const double tau = mc.cosine ? 0.1 : 1.0;
    const auto want = oracle(q.detach(), p.detach(), bank.queries, bank.passages, mc.cosine, tau, true, oracle_ids);
    const auto base = InfoNCEOptions().similarity(mc.cosine ? Similarity::Cosine : Similarity::Dot).temperature(tau);
    MaskedColumns first;
    for (const auto& [name, options] : std::vector<std::pair<std::string, InfoNCEOptions>>{
             {"untiled", InfoNCEOptions(base).tiled(false)},
             {"tiled", base},
             {"tiles of 2 x 3", InfoNCEOptions(base).tile_rows(2).tile_columns(3)}}) {
      SCOPED_TRACE(name);
      q.mutable_grad() = torch::Tensor();
      p.mutable_grad() = torch::Tensor();
      const auto result = info_nce(q, p, options, bank, c.ids);
      result.loss.backward();
      EXPECT_NEAR(result.loss.item<double>(), want.loss, 1e-12 * std::abs(want.loss));
      EXPECT_LE((to_eigen(q.grad()) - want.grad_q).cwiseAbs().maxCoeff(), 1e-12) << "query gradient";
      EXPECT_LE((to_eigen(p.grad().reshape({n * g, d})) - want.grad_p).cwiseAbs().maxCoeff(), 1e-12)
          << "passage gradient";
      // Every kind of collision occurred (the draws are seeded).
      EXPECT_GT(result.masked.in_batch + result.masked.hard_negative, 0);
      EXPECT_GT(result.masked.bank, 0);
      if (mc.query_bank) {
        EXPECT_GT(result.masked.banked_query, 0);
      }
      if (name == "untiled") {
        first = result.masked;
      } else {
        EXPECT_EQ(result.masked.total(), first.total());
      }
      const int64_t current = result.masked.in_batch + result.masked.hard_negative + result.masked.bank;
      EXPECT_DOUBLE_EQ(result.negatives_per_query,
                       static_cast<double>(n * g - 1 + m * gb) - static_cast<double>(current) / n);
      // The returned score matrix shows them as -inf.
      const auto scores = info_nce(q, p, InfoNCEOptions(options).return_scores(true), bank, c.ids).scores;
      EXPECT_EQ(torch::isinf(scores).sum().item<int64_t>(), current);
      if (!mc.query_bank) continue;
      // The banked rows' bank-by-bank log-sum-exp, given masked, is the one
      // computed inside.
      InfoNCEBank given = bank;
      given.row_logsumexp = bank_row_logsumexp(bank.queries, bank.passages, options, 2, 3,
                                               IdentityMask::of(c.bank_positive_ids, c.bank_passage_ids, gb, 0));
      EXPECT_NEAR(info_nce(q, p, options, given, c.ids).loss.item<double>(), want.loss, 1e-12 * std::abs(want.loss));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, InfoNCEMaskedOracle,
                         ::testing::Values(MaskCase{false, true}, MaskCase{true, true}, MaskCase{false, false}));

// Distinct identities: nothing is masked, and the loss and gradients are the
// unmasked ones bit for bit.
TEST(InfoNCEMasked, WithoutCollisionsTheLossIsTheUnmaskedOneBitForBit) {
  torch::manual_seed(7100);
  const int64_t n = 6, g = 2, m = 8, d = 5;
  auto q = torch::randn({n, d}).requires_grad_(true);
  auto p = torch::randn({n, g, d}).requires_grad_(true);
  InfoNCEBank bank;
  bank.queries = torch::randn({m, d});
  bank.passages = torch::randn({m, g, d});
  InfoNCEIds ids{torch::arange(n * g, torch::kLong), torch::arange(0, n * g, g, torch::kLong).unsqueeze(1)};
  InfoNCEBank with_ids = bank;
  with_ids.passage_ids = torch::arange(100, 100 + m * g, torch::kLong).view({m, g});
  with_ids.query_positive_ids = torch::arange(100, 100 + m * g, g, torch::kLong).unsqueeze(1);
  for (const bool tiled : {false, true}) {
    const auto options = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05).tiled(tiled);
    q.mutable_grad() = torch::Tensor();
    p.mutable_grad() = torch::Tensor();
    const auto plain = info_nce(q, p, options, bank);
    plain.loss.backward();
    const auto gq = q.grad().clone(), gp = p.grad().clone();
    q.grad().zero_();
    p.grad().zero_();
    const auto masked = info_nce(q, p, options, with_ids, ids);
    masked.loss.backward();
    EXPECT_EQ(masked.masked.total(), 0);
    EXPECT_TRUE(torch::equal(masked.loss, plain.loss)) << "tiled " << tiled;
    EXPECT_TRUE(torch::equal(q.grad(), gq));
    EXPECT_TRUE(torch::equal(p.grad(), gp));
  }
}

TEST(IdentityMask, KeepsEachRowsTargetAndFindsEveryOtherPositive) {
  // Rows' positives: row 0 {5, 7}, row 1 {7}, row 2 none (-1).
  const auto positives = torch::tensor({5, 7, 7, -1, -1, -1}, torch::kLong).view({3, 2});
  const auto columns = torch::tensor({5, 7, 7, 9, 5, -1}, torch::kLong);
  // Targets: row i's column 2 i (stride 2).
  const auto mask = IdentityMask::of(positives, columns, 2, 0);
  // Row 0: columns 1, 2 (7) and 4 (5), not 0 (its target). Row 1: column 1
  // (7), not 2 (its target). Row 2: nothing; -1 never matches.
  EXPECT_TRUE(torch::equal(mask.rows(), torch::tensor({0, 0, 0, 1}, torch::kLong)));
  EXPECT_TRUE(torch::equal(mask.columns(), torch::tensor({1, 2, 4, 1}, torch::kLong)));
  auto block = torch::zeros({3, 6});
  mask.apply(block);
  EXPECT_EQ(torch::isinf(block).sum().item<int64_t>(), 4);
  auto tile = torch::zeros({2, 3});  // rows 0-1, columns 1-3
  mask.apply(tile, 0, 1);
  EXPECT_TRUE(torch::isinf(tile[0][0]).item<bool>() && torch::isinf(tile[0][1]).item<bool>());
  EXPECT_TRUE(torch::isinf(tile[1][0]).item<bool>());
  EXPECT_EQ(torch::isinf(tile).sum().item<int64_t>(), 3);
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// A row whose whole first column tile is masked: its running maximum is
// still -inf after that tile. The tiled loss must stay finite and equal the
// untiled one.
TEST(InfoNCEMasked, ARowWhoseFirstTileIsAllMaskedStaysFinite) {
  torch::manual_seed(7200);
  auto q = torch::randn({6, 4}, torch::kDouble).requires_grad_(true);
  auto p = torch::randn({6, 4}, torch::kDouble).requires_grad_(true);
  // Passages 0 and 1 are one passage (5), row 2's second positive.
  const InfoNCEIds ids{torch::tensor({5, 5, 7, 8, 9, 10}, torch::kLong),
                       torch::tensor({{5, -1}, {5, -1}, {7, 5}, {8, -1}, {9, -1}, {10, -1}}, torch::kLong)};
  auto loss_and_grads = [&](const InfoNCEOptions& options) {
    q.mutable_grad() = torch::Tensor();
    p.mutable_grad() = torch::Tensor();
    const auto r = info_nce(q, p, options, {}, ids);
    r.loss.backward();
    return std::make_tuple(r.loss.item<double>(), q.grad().clone(), p.grad().clone(), r.masked.total());
  };
  const auto [want, wq, wp, wm] = loss_and_grads(InfoNCEOptions().tiled(false));
  const auto [got, gq, gp, gm] = loss_and_grads(InfoNCEOptions().tile_rows(2).tile_columns(2));
  EXPECT_EQ(wm, 4);  // rows 0 and 1 see each other's positive; row 2 both
  ASSERT_TRUE(std::isfinite(got));
  EXPECT_NEAR(got, want, 1e-12 * std::abs(want));
  EXPECT_TRUE(torch::allclose(gq, wq, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(gp, wp, 1e-12, 1e-12));
}

}  // namespace
}  // namespace contaccum
