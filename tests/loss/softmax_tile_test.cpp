// The fused tile kernels (include/contaccum/loss/softmax_tile.h): their
// exponential against float64's, the running log-sum-exp and the softmax
// weights against float64 with error bounds from their order of operations,
// and bit for bit against each other: every instruction set this CPU runs,
// one thread and two, either layout of a tile.

#include "contaccum/loss/softmax_tile.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "loss/short_products_settings.h"

namespace contaccum {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Distance in units in the last place between two non-negative floats (their
// bit patterns are ordered as their values).
int64_t ulps_apart(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, sizeof a);
  std::memcpy(&ib, &b, sizeof b);
  return std::abs(static_cast<int64_t>(ia) - ib);
}

// Arguments across the normal range, the subnormal results and beyond.
torch::Tensor exp_arguments() {
  torch::manual_seed(3);
  return torch::cat({torch::linspace(-87.0, 88.0, 1 << 20), torch::rand({1 << 18}) * 175 - 87,
                     torch::linspace(-104.0, -87.0, 1 << 16), torch::rand({1 << 12}) * 2 - 1});
}

TEST(TileExp, WithinTwoUnitsInTheLastPlaceOnEveryInstructionSet) {
  ProductSettings restore;
  const auto x = exp_arguments();
  // float64's exp rounded to float32: the exact value within float32's
  // rounding.
  const auto exact = x.to(torch::kDouble).exp().to(torch::kFloat);
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    const auto y = tile_exp(x);
    const float *got = y.data_ptr<float>(), *want = exact.data_ptr<float>(), *arg = x.data_ptr<float>();
    int64_t worst = 0, worst_at = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t u = ulps_apart(got[i], want[i]);
      if (u > worst) worst = u, worst_at = i;
    }
    EXPECT_LE(worst, 2) << "exp(" << arg[worst_at] << ") = " << got[worst_at] << ", float64 says " << want[worst_at];
    const auto special = tile_exp(
        torch::tensor({0.0f, -0.0f, -kInf, kInf, std::nanf(""), -200.0f, 200.0f, 88.8f, 88.7f, -104.5f, -110.0f}));
    const auto s = special.accessor<float, 1>();
    EXPECT_EQ(s[0], 1.0f);
    EXPECT_EQ(s[1], 1.0f);
    EXPECT_EQ(s[2], 0.0f);
    EXPECT_EQ(s[3], kInf);
    EXPECT_TRUE(std::isnan(s[4]));
    EXPECT_EQ(s[5], 0.0f);
    EXPECT_EQ(s[6], kInf);
    EXPECT_EQ(s[7], kInf);
    EXPECT_TRUE(std::isfinite(s[8]) && s[8] > 1e38f);
    EXPECT_EQ(s[9], 0.0f);
    EXPECT_EQ(s[10], 0.0f);
  }
}

TEST(TileExp, EveryInstructionSetGivesTheSameBits) {
  ProductSettings restore;
  const auto isas = isas_this_cpu_runs();
  if (isas.size() == 1) GTEST_SKIP() << "this CPU runs only the portable kernels";
  const auto x = exp_arguments();
  set_short_product_isa(ShortProductIsa::Portable);
  const auto portable = tile_exp(x);
  for (size_t i = 1; i < isas.size(); ++i) {
    set_short_product_isa(isas[i]);
    EXPECT_TRUE(same_bits(portable, tile_exp(x))) << "instruction set " << i;
  }
}

struct TileCase {
  int64_t rows, columns;
  bool column_major, masked;
};
// {4100, 3}: a column-major tile shared out in pieces of hundreds of rows
// (an eighth of its rows each, in whole vectors), the last one partial.
const TileCase kTileCases[] = {{32, 1024, false, false}, {1024, 32, true, false}, {5, 37, false, true},
                               {37, 5, true, true},      {3, 1, false, false},    {17, 64, true, false},
                               {4100, 3, true, true}};

// A [rows, columns] tile in the case's layout, holding `values`.
torch::Tensor in_layout(const torch::Tensor& values, bool column_major) {
  return column_major ? values.t().contiguous().t() : values.contiguous();
}

// Scores spread as a loss's are (inv_tau 20 times cosines), a few -inf
// entries and one row all -inf when masked.
torch::Tensor tile_scores(const TileCase& c, int tile) {
  auto s = (torch::rand({c.rows, c.columns}) * 2 - 1) * 20;
  if (c.masked) {
    s.masked_fill_(torch::rand({c.rows, c.columns}) < 0.2, -kInf);
    if (tile == 0) s[0].fill_(-kInf);
  }
  return s;
}

struct Folded {
  torch::Tensor max, sum;
  std::vector<torch::Tensor> tiles;
};

// Three tiles folded in, from an outside log-sum-exp on odd rows.
Folded fold_three(const TileCase& c, uint64_t seed) {
  torch::manual_seed(seed);
  Folded f;
  f.max = torch::full({c.rows}, -kInf);
  f.sum = torch::zeros({c.rows});
  for (int64_t r = 1; r < c.rows; r += 2) f.max[r] = 3.5f, f.sum[r] = 1.0f;
  for (int t = 0; t < 3; ++t) {
    f.tiles.push_back(tile_scores(c, t));
    EXPECT_TRUE(fold_logsumexp_tile(in_layout(f.tiles.back(), c.column_major), f.max, f.sum, c.masked));
  }
  return f;
}

TEST(SoftmaxTile, TheRunningLogSumExpMatchesFloat64WithinItsOrdersErrorBound) {
  ProductSettings restore;
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    for (const auto& c : kTileCases) {
      const auto f = fold_three(c, 5);
      auto all = torch::cat(f.tiles, 1).to(torch::kDouble);
      auto outside = torch::full({c.rows, 1}, -std::numeric_limits<double>::infinity(), torch::kDouble);
      for (int64_t r = 1; r < c.rows; r += 2) outside[r][0] = 3.5;
      all = torch::cat({outside, all}, 1);
      const auto exact = all.logsumexp(1);
      // The maximum is exact; the sum of positive terms, each exp within 2
      // ulps, chains ceil(columns / 16) + 4 additions a tile by rows (the
      // lanes, then the tree), `columns` by columns, a rescale and an add
      // per tile: a relative error of the sum, so an absolute one of its log.
      const int64_t chain = c.column_major ? c.columns : (c.columns + 15) / 16 + 4;
      // Each term's argument, score - maximum, is rounded too: its
      // exponential's relative error is |argument| u, which the softmax
      // weighs down for all but the largest terms (10 u allowed).
      const double bound = (3.0 * (chain + 2) + 4.0 + 10.0) * kUnit * 1.01;
      const auto lse = f.max.to(torch::kDouble) + f.sum.to(torch::kDouble).log();
      const auto exact_max = std::get<0>(all.max(1)).to(torch::kFloat);
      for (int64_t r = 0; r < c.rows; ++r) {
        const float want_max = c.masked && std::isinf(exact_max[r].item<float>()) ? std::numeric_limits<float>::lowest()
                                                                                  : exact_max[r].item<float>();
        EXPECT_EQ(f.max[r].item<float>(), want_max) << "row " << r;
        EXPECT_NEAR(lse[r].item<double>(), exact[r].item<double>(), bound)
            << "rows " << c.rows << " columns " << c.columns << " row " << r;
      }
    }
  }
}

TEST(SoftmaxTile, TheRunningLogSumExpIsTheSameBitsOnEveryInstructionSetAndThreadCount) {
  ProductSettings restore;
  set_short_product_isa(ShortProductIsa::Portable);
  std::vector<Folded> reference;
  for (const auto& c : kTileCases) reference.push_back(fold_three(c, 6));
  auto compare = [&](const char* what) {
    for (size_t k = 0; k < std::size(kTileCases); ++k) {
      const auto f = fold_three(kTileCases[k], 6);
      EXPECT_TRUE(same_bits(f.max, reference[k].max) && same_bits(f.sum, reference[k].sum)) << what << ", case " << k;
    }
  };
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    compare("instruction set");
  }
  if (blas_threads() > 0) {
    set_compute_threads(1);
    compare("one thread");
    set_compute_threads(2);
    compare("two threads");
  }
}

TEST(SoftmaxTile, WeightsMatchFloat64AndAreTheSameBitsInEveryLayoutAndInstructionSet) {
  ProductSettings restore;
  torch::manual_seed(7);
  const double factor = 20.0 / 3.0;
  for (const auto& c : kTileCases) {
    const auto scores = tile_scores(c, 0);
    const auto lse = std::get<0>(scores.max(1)).clamp_min(-50) + torch::rand({c.rows}) * 5;
    const auto x = scores.to(torch::kDouble) - lse.to(torch::kDouble).unsqueeze(1);
    const auto exact = x.exp() * static_cast<double>(static_cast<float>(factor));
    torch::Tensor first;
    for (const auto isa : isas_this_cpu_runs()) {
      set_short_product_isa(isa);
      for (const bool column_major : {false, true}) {
        const auto in = in_layout(scores, column_major);
        auto out = in_layout(torch::full({c.rows, c.columns}, std::nanf("")), column_major);
        ASSERT_TRUE(softmax_weights_tile(out, in, lse, factor));
        auto in_place = in.clone();  // clone keeps the layout
        ASSERT_TRUE(softmax_weights_tile(in_place, in_place, lse, factor));
        EXPECT_TRUE(same_bits(out, in_place));
        if (!first.defined()) first = out.contiguous();
        EXPECT_TRUE(same_bits(first, out)) << "column-major " << column_major;
        // exp's 2 ulps, the subtraction's rounding times |x|, the factor's
        // multiplication.
        const auto bound = exact * ((x.abs().nan_to_num(0, 0, 0) + 4) * kUnit * 1.01);
        const auto error = (out.to(torch::kDouble) - exact).abs().nan_to_num(0);
        EXPECT_TRUE((error <= bound).all().item<bool>()) << "rows " << c.rows << " columns " << c.columns;
      }
    }
  }
}

// The order softmax_tile.h states for a column-major tile, written out one
// row at a time with the kernels' own exponential (tile_exp) and float
// arithmetic rounded at each step: the maximum over the old one and the
// columns, then exp(score - maximum) summed over the columns in order from
// zero, then old sum * exp(old maximum - maximum) + that sum.
TEST(SoftmaxTile, AColumnMajorFoldSumsEachRowOverTheColumnsInOrder) {
  ProductSettings restore;
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    for (const auto& c : kTileCases) {
      if (!c.column_major || c.columns < 2) continue;
      const auto f = fold_three(c, 8);
      // The first two tiles again, then the third by hand.
      Folded before;
      before.max = torch::full({c.rows}, -kInf);
      before.sum = torch::zeros({c.rows});
      for (int64_t r = 1; r < c.rows; r += 2) before.max[r] = 3.5f, before.sum[r] = 1.0f;
      for (int t = 0; t < 2; ++t)
        ASSERT_TRUE(fold_logsumexp_tile(in_layout(f.tiles[t], true), before.max, before.sum, c.masked));
      const auto tile = f.tiles[2].contiguous();
      const auto tile_max = std::get<0>(tile.max(1));
      auto new_max = torch::maximum(before.max, tile_max);
      if (c.masked) new_max.clamp_min_(std::numeric_limits<float>::lowest());
      const auto terms = tile_exp(tile - new_max.unsqueeze(1)).contiguous();
      const auto rescale = tile_exp(before.max - new_max);
      auto want_sum = torch::empty({c.rows});
      for (int64_t r = 0; r < c.rows; ++r) {
        const float* row = terms.data_ptr<float>() + r * c.columns;
        volatile float total = 0.0f;  // each add rounded, in column order
        for (int64_t j = 0; j < c.columns; ++j) total = total + row[j];
        volatile const float scaled = before.sum[r].item<float>() * rescale[r].item<float>();
        want_sum[r] = scaled + total;
      }
      EXPECT_TRUE(same_bits(f.max, new_max)) << "rows " << c.rows << " columns " << c.columns;
      EXPECT_TRUE(same_bits(f.sum, want_sum)) << "rows " << c.rows << " columns " << c.columns;
    }
  }
}

TEST(SoftmaxTile, NaNTravelsAndOtherOperandsAreLeftToTheCaller) {
  ProductSettings restore;
  auto scores = torch::randn({4, 40});
  scores[2][17] = std::nanf("");
  auto max = torch::full({4}, -kInf), sum = torch::zeros({4});
  ASSERT_TRUE(fold_logsumexp_tile(scores, max, sum, false));
  EXPECT_TRUE(std::isnan(sum[2].item<float>()));
  EXPECT_TRUE(torch::isfinite(sum.index({torch::tensor({0, 1, 3})})).all().item<bool>());
  auto out = torch::empty({4, 40});
  ASSERT_TRUE(softmax_weights_tile(out, scores, torch::zeros({4}), 1.0));
  EXPECT_TRUE(std::isnan(out[2][17].item<float>()));
  EXPECT_EQ(torch::isnan(out).sum().item<int64_t>(), 1);
  // Not taken, nothing written: float64, a tile with neither stride 1,
  // running values that are not float32, the kernels switched off.
  const auto before = sum.clone();
  EXPECT_FALSE(fold_logsumexp_tile(scores.to(torch::kDouble), max, sum, false));
  EXPECT_FALSE(fold_logsumexp_tile(torch::randn({8, 80}).slice(1, 0, 80, 2).slice(0, 0, 8, 2), max, sum, false));
  EXPECT_FALSE(fold_logsumexp_tile(scores, max.to(torch::kDouble), sum.to(torch::kDouble), false));
  EXPECT_FALSE(softmax_weights_tile(out.to(torch::kDouble), scores.to(torch::kDouble), torch::zeros({4}), 1.0));
  set_short_products_enabled(false);
  EXPECT_FALSE(fold_logsumexp_tile(scores, max, sum, false));
  EXPECT_FALSE(softmax_weights_tile(out, scores, torch::zeros({4}), 1.0));
  EXPECT_TRUE(torch::equal(sum.nan_to_num(0), before.nan_to_num(0)));
}

}  // namespace
}  // namespace contaccum
