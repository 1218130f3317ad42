// False-negative masking in the loss: the float64 oracle with masks (every
// column kind, both directions, untiled and in tiles), no collision = the
// unmasked loss bit for bit, a row whose first tile is all masked, and
// IdentityMask itself.
#include "info_nce_oracle.h"

#include <tuple>

namespace contaccum {
namespace {

using test::Mat;
using test::oracle;
using test::OracleIds;
using test::to_eigen;

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

// The same in bf16 (a model cast to bf16 gives bf16 rows, and the tiles
// compute in the rows' type): the running maximum of a row whose first tile
// is all masked is held at bf16's lowest finite value, not float's (which
// bf16 cannot hold); the tiled loss and gradients within bf16 rounding of
// the float64 loss of the same values.
TEST(InfoNCEMasked, ARowWhoseFirstTileIsAllMaskedStaysFiniteInBf16) {
  torch::manual_seed(7201);
  const auto q64 = torch::randn({6, 4}, torch::kDouble), p64 = torch::randn({6, 4}, torch::kDouble);
  const InfoNCEIds ids{torch::tensor({5, 5, 7, 8, 9, 10}, torch::kLong),
                       torch::tensor({{5, -1}, {5, -1}, {7, 5}, {8, -1}, {9, -1}, {10, -1}}, torch::kLong)};
  auto loss_and_grads = [&](torch::ScalarType type, const InfoNCEOptions& options) {
    auto q = q64.to(torch::kBFloat16).to(type).requires_grad_(true);
    auto p = p64.to(torch::kBFloat16).to(type).requires_grad_(true);
    const auto r = info_nce(q, p, options, {}, ids);
    r.loss.backward();
    return std::make_tuple(r.loss.to(torch::kDouble).item<double>(), q.grad().to(torch::kDouble),
                           p.grad().to(torch::kDouble));
  };
  const auto [want, wq, wp] = loss_and_grads(torch::kDouble, InfoNCEOptions().tiled(false));
  const auto [got, gq, gp] = loss_and_grads(torch::kBFloat16, InfoNCEOptions().tile_rows(2).tile_columns(2));
  ASSERT_TRUE(std::isfinite(got));
  EXPECT_NEAR(got, want, 2e-2 * std::abs(want));
  EXPECT_TRUE(torch::allclose(gq, wq, 5e-2, 5e-3)) << (gq - wq).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(gp, wp, 5e-2, 5e-3)) << (gp - wp).abs().max().item<double>();
}

}  // namespace
}  // namespace contaccum
