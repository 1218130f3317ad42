// The tile kernels' logarithm and log-add-exp (softmax_tile.h): against
// float64 within a few units in the last place, their special values, and
// bit for bit on every instruction set this CPU runs and wherever an
// element lies in a tensor (ATen's log-add-exp gives other last bits to an
// element handled by a partial vector than to one in a whole vector, so its
// results depend on the CPU's vector width).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "contaccum/loss/softmax_tile.h"
#include "loss/short_products_settings.h"

namespace contaccum {
namespace tile_log_test {

constexpr float kInf = std::numeric_limits<float>::infinity();

// |got - exact| in units in the last place of the float32 nearest `exact`.
double ulps_off(float got, double exact) {
  const float nearest = static_cast<float>(exact);
  const double ulp = std::nextafter(std::fabs(nearest), kInf) - std::fabs(nearest);
  return std::fabs(static_cast<double>(got) - exact) / ulp;
}

// Positive arguments: the whole normal range (exp of a dense grid), the
// sums a log-sum-exp takes (1 to 1e5), and values next to 1.
torch::Tensor log_arguments() {
  torch::manual_seed(8);
  return torch::cat({torch::linspace(-87.0, 88.0, 1 << 19).exp(), torch::rand({1 << 18}) * 1e5 + 1,
                     1 + (torch::rand({1 << 14}) - 0.5) * 1e-3, torch::linspace(0.5, 2.0, 1 << 16)});
}

TEST(TileLog, WithinTwoUnitsInTheLastPlaceOnEveryInstructionSet) {
  ProductSettings restore;
  const auto x = log_arguments();
  const auto exact = x.to(torch::kDouble).log();
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    const auto y = tile_log(x);
    const float *got = y.data_ptr<float>(), *arg = x.data_ptr<float>();
    const double* want = exact.data_ptr<double>();
    double worst = 0;
    int64_t worst_at = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double u = ulps_off(got[i], want[i]);
      if (u > worst) worst = u, worst_at = i;
    }
    EXPECT_LE(worst, 2.0) << "log(" << arg[worst_at] << ") = " << got[worst_at] << ", float64 says " << want[worst_at];
    const auto special = tile_log(torch::tensor({0.0f, -0.0f, -1.0f, kInf, std::nanf(""), 1.0f, 1e-40f, 2.0f}));
    const auto s = special.accessor<float, 1>();
    EXPECT_EQ(s[0], -kInf);
    EXPECT_EQ(s[1], -kInf);
    EXPECT_TRUE(std::isnan(s[2]));
    EXPECT_EQ(s[3], kInf);
    EXPECT_TRUE(std::isnan(s[4]));
    EXPECT_EQ(s[5], 0.0f);
    EXPECT_LE(ulps_off(s[6], std::log(1e-40)), 2.0);  // a subnormal argument
    EXPECT_LE(ulps_off(s[7], std::log(2.0)), 1.0);
  }
}

TEST(TileLog, EveryInstructionSetGivesTheSameBits) {
  ProductSettings restore;
  const auto isas = isas_this_cpu_runs();
  if (isas.size() == 1) GTEST_SKIP() << "this CPU runs only the portable kernels";
  const auto x = log_arguments();
  set_short_product_isa(ShortProductIsa::Portable);
  const auto portable = tile_log(x);
  for (size_t i = 1; i < isas.size(); ++i) {
    set_short_product_isa(isas[i]);
    EXPECT_TRUE(same_bits(portable, tile_log(x))) << "instruction set " << i;
  }
}

TEST(TileLog, AddLogIsTheBasePlusTheLogarithm) {
  ProductSettings restore;
  torch::manual_seed(9);
  const auto base = torch::randn({37}) * 10, x = torch::rand({37}) * 100 + 1;
  auto out = torch::empty({37});
  ASSERT_TRUE(tile_add_log_out(out, base, x));
  EXPECT_TRUE(same_bits(out, base + tile_log(x)));
  auto in_place = base.clone();
  ASSERT_TRUE(tile_add_log_out(in_place, in_place, x));
  EXPECT_TRUE(same_bits(in_place, out));
  // Operands the kernels do not take are left to the caller.
  EXPECT_FALSE(tile_add_log_out(out, base.to(torch::kDouble), x));
  EXPECT_FALSE(tile_add_log_out(out, base, torch::rand({74}).slice(0, 0, 74, 2)));
  set_short_products_enabled(false);
  EXPECT_FALSE(tile_add_log_out(out, base, x));
}

// log(e^a + e^b) in float64, the way round that keeps its precision.
double logaddexp64(double a, double b) {
  const double high = std::max(a, b);
  return high + std::log1p(std::exp(std::min(a, b) - high));
}

TEST(TileLogAddExp, MatchesFloat64AndHasTheSameBitsWhereverAnElementLies) {
  ProductSettings restore;
  torch::manual_seed(10);
  const int64_t n = 4099;
  // Far apart, close together and equal pairs, as a score cache's tree
  // holds; the last third near -log 2, where the result is near 0 and
  // shows every rounding of log(1 + t) (other formulas round differently
  // there first).
  const int64_t third = n / 3, rest = n - 2 * third;
  auto a =
      torch::cat({torch::randn({third}) * 30, torch::randn({third}) * 5, -0.69315f + torch::randn({rest}) * 0.01f});
  auto b = a + torch::cat({torch::randn({third}) * 30, torch::randn({third}) * 0.01, torch::randn({rest}) * 1e-3});
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    SCOPED_TRACE(static_cast<int>(isa));
    auto out = torch::empty({n});
    ASSERT_TRUE(tile_logaddexp_out(out, a, b));
    const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>(), *got = out.data_ptr<float>();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      // The larger operand's rounding and log1p's, relative to the larger of
      // it and the result: a few units there.
      const double exact = logaddexp64(pa[i], pb[i]);
      const double scale =
          std::max(std::fabs(exact), static_cast<double>(std::max(std::fabs(pa[i]), std::fabs(pb[i]))));
      worst = std::max(worst, std::fabs(got[i] - exact) / (scale * kUnit * 2));
    }
    EXPECT_LE(worst, 3.0);
    // Every element the same bits alone, in a partial vector, at every
    // offset and as a row of a 2-D view.
    for (int64_t offset = 0; offset < n - 40; offset += 13) {
      for (const int64_t length : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{23}, int64_t{40}}) {
        auto part = torch::empty({length});
        ASSERT_TRUE(tile_logaddexp_out(part, a.narrow(0, offset, length), b.narrow(0, offset, length)));
        EXPECT_TRUE(same_bits(part, out.narrow(0, offset, length))) << "offset " << offset << ", length " << length;
      }
    }
    auto rows = torch::empty({4, 1024});
    ASSERT_TRUE(tile_logaddexp_out(rows, a.narrow(0, 3, 4096).view({4, 1024}), b.narrow(0, 3, 4096).view({4, 1024})));
    EXPECT_TRUE(same_bits(rows.view({-1}), out.narrow(0, 3, 4096)));
    if (isa != ShortProductIsa::Portable) {
      set_short_product_isa(ShortProductIsa::Portable);
      auto portable = torch::empty({n});
      ASSERT_TRUE(tile_logaddexp_out(portable, a, b));
      EXPECT_TRUE(same_bits(portable, out));
    }
  }
}

TEST(TileLogAddExp, InfinitiesAndNaN) {
  ProductSettings restore;
  const float nan = std::nanf("");
  const auto a = torch::tensor({-kInf, -kInf, 3.0f, kInf, 1.0f, nan, 1.0f, -kInf, 0.5f});
  const auto b = torch::tensor({-kInf, 3.0f, -kInf, 1.0f, kInf, 1.0f, nan, kInf, 0.5f});
  auto out = torch::empty({9});
  ASSERT_TRUE(tile_logaddexp_out(out, a, b));
  const auto s = out.accessor<float, 1>();
  EXPECT_EQ(s[0], -kInf);
  EXPECT_EQ(s[1], 3.0f);
  EXPECT_EQ(s[2], 3.0f);
  EXPECT_EQ(s[3], kInf);
  EXPECT_EQ(s[4], kInf);
  EXPECT_TRUE(std::isnan(s[5]));
  EXPECT_TRUE(std::isnan(s[6]));
  EXPECT_EQ(s[7], kInf);
  EXPECT_LE(ulps_off(s[8], 0.5 + std::log(2.0)), 1.0);
  // Each pair at every place of 40 finite ones: the vector that holds it
  // goes element by element, giving each the value it has alone.
  torch::manual_seed(11);
  const auto finite_a = torch::randn({40}) * 5, finite_b = torch::randn({40}) * 5;
  auto finite_out = torch::empty({40});
  ASSERT_TRUE(tile_logaddexp_out(finite_out, finite_a, finite_b));
  for (int64_t k = 0; k < 9; ++k) {
    for (int64_t at = 0; at < 40; ++at) {
      auto pa = finite_a.clone(), pb = finite_b.clone(), got = torch::empty({40});
      pa[at] = a[k], pb[at] = b[k];
      ASSERT_TRUE(tile_logaddexp_out(got, pa, pb));
      auto want = finite_out.clone();
      want[at] = out[k];
      EXPECT_TRUE(same_bits(got, want)) << "pair " << k << " at " << at;
    }
  }
  // Two operands of other shapes or types are left to the caller.
  EXPECT_FALSE(tile_logaddexp_out(out, a, b.to(torch::kDouble)));
  EXPECT_FALSE(tile_logaddexp_out(out, a, torch::zeros({10})));
}

}  // namespace tile_log_test
}  // namespace contaccum
