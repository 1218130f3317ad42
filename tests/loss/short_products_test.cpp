// The short products (include/contaccum/loss/short_products.h) against a
// float64 oracle with an error bound derived from their order of operations,
// and bit for bit against each other: every instruction set this CPU runs,
// one thread and two.

#include "contaccum/loss/short_products.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

#include "contaccum/core/compute_threads.h"
#include "contaccum/loss/info_nce.h"
#include "loss/short_products_settings.h"

namespace contaccum {
namespace {

struct DotCase {
  int64_t nx, ny, d;
};
// {5, 130, 2100}: a weighted sum's pieces of 320 columns, each packed in
// windows of 128, 128 and 64, and a last piece of 180 (windows of 128 and
// 52, ending in a partial vector); two blocks of 64 bank rows before a
// short one.
const DotCase kDotCases[] = {{1, 1, 1},      {4, 6, 16},  {5, 7, 17},  {32, 1030, 1024}, {3, 100, 15},
                             {64, 200, 100}, {2, 65, 33}, {32, 48, 1}, {5, 130, 2100}};

TEST(ShortProducts, DotsMatchFloat64WithinTheirOrdersErrorBound) {
  ProductSettings restore;
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    for (const auto& c : kDotCases) {
      const auto x = torch::randn({c.nx, c.d}), y = torch::randn({c.ny, c.d});
      auto out = torch::full({c.nx, c.ny}, std::nan(""));
      row_dots_out(out, x, y);
      const auto exact = x.to(torch::kDouble).mm(y.to(torch::kDouble).t());
      // Each of the 16 lanes chains ceil(d / 16) fused multiply-adds, then
      // four additions: |error| <= (ceil(d / 16) + 4) u sum |x_k y_k| (to
      // first order).
      const double chain = static_cast<double>((c.d + 15) / 16 + 4);
      const auto bound = x.abs().to(torch::kDouble).mm(y.abs().to(torch::kDouble).t()) * (chain * kUnit * 1.01);
      const auto error = (out.to(torch::kDouble) - exact).abs();
      EXPECT_TRUE((error <= bound).all().item<bool>())
          << "nx " << c.nx << " ny " << c.ny << " d " << c.d << ": largest error over bound "
          << (error - bound).max().item<double>();
    }
  }
}

TEST(ShortProducts, WeightedRowsMatchFloat64WithinTheirOrdersErrorBound) {
  ProductSettings restore;
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    for (const auto& c : kDotCases) {
      // out [nx, d] += w [nx, ny] y [ny, d]
      const auto w = torch::randn({c.nx, c.ny}), y = torch::randn({c.ny, c.d}), before = torch::randn({c.nx, c.d});
      auto out = before.clone();
      add_weighted_rows_(out, w, y);
      const auto exact = before.to(torch::kDouble) + w.to(torch::kDouble).mm(y.to(torch::kDouble));
      // A chain of at most 64 fused multiply-adds per block, then one
      // addition per block into out.
      const double chain = static_cast<double>(std::min<int64_t>(c.ny, 64) + (c.ny + 63) / 64 + 1);
      const auto bound = (before.abs().to(torch::kDouble) + w.abs().to(torch::kDouble).mm(y.abs().to(torch::kDouble))) *
                         (chain * kUnit * 1.01);
      const auto error = (out.to(torch::kDouble) - exact).abs();
      EXPECT_TRUE((error <= bound).all().item<bool>())
          << "n " << c.nx << " m " << c.ny << " d " << c.d << ": largest error over bound "
          << (error - bound).max().item<double>();
    }
  }
}

// The products of the tiled loss's layouts: a transposed output, a
// transposed weight matrix, rows that are a strided block of a wider matrix.
struct LayoutResults {
  std::vector<torch::Tensor> outputs;
  std::vector<bool> short_kernels;  // per output: made by the short products, not LibTorch
};

LayoutResults all_layouts(uint64_t seed) {
  torch::manual_seed(seed);
  LayoutResults r;
  for (const auto& c : kDotCases) {
    const auto x = torch::randn({c.nx, c.d + 3}).narrow(1, 1, c.d), y = torch::randn({c.ny, c.d});
    // Signed zeros, infinities and a NaN travel as the arithmetic says.
    if (c.nx > 2 && c.d > 2) {
      x[0][0] = -0.0f;
      x[1][1] = std::numeric_limits<float>::infinity();
      x[2][2] = std::nan("");
    }
    auto out = torch::empty({c.nx, c.ny});
    row_dots_out(out, x, y);
    auto transposed = torch::empty({c.nx, c.ny}).t();
    row_dots_out(transposed, y, x);  // long side first: swapped inside
    auto sums = torch::randn({c.ny, c.d});
    const auto sums_w = torch::randn({c.nx, c.ny}).t(), sums_y = torch::randn({c.nx, c.d});
    add_weighted_rows_(sums, sums_w, sums_y);
    auto short_sums = torch::randn({c.nx, c.d});
    const auto short_w = torch::randn({c.nx, c.ny});
    add_weighted_rows_(short_sums, short_w, y);
    r.outputs.insert(r.outputs.end(), {out, transposed, sums, short_sums});
    r.short_kernels.insert(r.short_kernels.end(),
                           {row_dots_short(out, x, y), row_dots_short(transposed, y, x),
                            weighted_rows_short(sums, sums_w, sums_y), weighted_rows_short(short_sums, short_w, y)});
  }
  return r;
}

TEST(ShortProducts, EveryInstructionSetGivesTheSameBits) {
  ProductSettings restore;
  const auto isas = isas_this_cpu_runs();
  if (isas.size() == 1) GTEST_SKIP() << "this CPU runs only the portable kernels";
  set_short_product_isa(ShortProductIsa::Portable);
  const auto portable = all_layouts(11);
  for (size_t i = 1; i < isas.size(); ++i) {
    set_short_product_isa(isas[i]);
    const auto vector = all_layouts(11);
    for (size_t k = 0; k < portable.outputs.size(); ++k)
      EXPECT_TRUE(same_bits(portable.outputs[k], vector.outputs[k])) << "instruction set " << i << ", output " << k;
  }
}

TEST(ShortProducts, OneThreadAndTwoGiveTheSameBits) {
  ProductSettings restore;
  if (blas_threads() < 0) GTEST_SKIP() << "the BLAS is not OpenBLAS: its thread count cannot be set";
  set_compute_threads(1);
  const auto one = all_layouts(12);
  set_compute_threads(2);
  const auto two = all_layouts(12);
  // Only the short products' own: LibTorch's path (OpenBLAS) promises no
  // such thing, and on an AMD EPYC without AVX-512 (Zen 3) its sgemm with one
  // thread and with two differs in the last bits for the [ny, d] sums with
  // more than 64 output rows here.
  int checked = 0;
  for (size_t k = 0; k < one.outputs.size(); ++k) {
    ASSERT_EQ(one.short_kernels[k], two.short_kernels[k]) << k;
    if (!one.short_kernels[k]) continue;
    EXPECT_TRUE(same_bits(one.outputs[k], two.outputs[k])) << k;
    ++checked;
  }
  // Of the four outputs a case makes, its [ny, d] sums go to LibTorch when
  // ny > kShortSideRows (and every case's nx is short).
  for (const auto& c : kDotCases) ASSERT_LE(c.nx, kShortSideRows);
  const auto long_sums =
      std::count_if(std::begin(kDotCases), std::end(kDotCases), [](const DotCase& c) { return c.ny > kShortSideRows; });
  EXPECT_EQ(checked, 4 * static_cast<int>(std::size(kDotCases)) - static_cast<int>(long_sums));
}

TEST(ShortProducts, AScaleMultipliesTheRoundedDotProductAsATenWould) {
  ProductSettings restore;
  const double alpha = 20.0 / 3.0;  // not a float: rounded as ATen rounds a scalar
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    for (const auto& c : kDotCases) {
      const auto x = torch::randn({c.nx, c.d}), y = torch::randn({c.ny, c.d});
      auto scaled = torch::empty({c.nx, c.ny}), then_multiplied = torch::empty({c.nx, c.ny});
      row_dots_out(scaled, x, y, alpha);
      row_dots_out(then_multiplied, x, y);
      then_multiplied.mul_(alpha);
      EXPECT_TRUE(same_bits(scaled, then_multiplied)) << "nx " << c.nx << " ny " << c.ny << " d " << c.d;
    }
  }
  // LibTorch's path (no short side) scales the same way.
  const auto x = torch::randn({70, 40}), y = torch::randn({80, 40});
  auto out = torch::empty({70, 80});
  row_dots_out(out, x, y, alpha);
  EXPECT_TRUE(same_bits(out, x.mm(y.t()).mul_(alpha)));
}

TEST(ShortProducts, LongProductsAndOtherTypesGoToLibTorch) {
  const auto x = torch::randn({65, 40}), y = torch::randn({70, 40});
  auto out = torch::empty({65, 70});
  EXPECT_FALSE(row_dots_short(out, x, y));
  row_dots_out(out, x, y);
  EXPECT_TRUE(same_bits(out, x.mm(y.t())));
  const auto xd = torch::randn({3, 5}, torch::kDouble), yd = torch::randn({4, 5}, torch::kDouble);
  auto outd = torch::empty({3, 4}, torch::kDouble);
  EXPECT_FALSE(row_dots_short(outd, xd, yd));
  row_dots_out(outd, xd, yd);
  EXPECT_TRUE(torch::equal(outd, xd.mm(yd.t())));
  EXPECT_TRUE(row_dots_short(torch::empty({3, 70}), x.narrow(0, 0, 3), y));
  EXPECT_FALSE(weighted_rows_short(torch::empty({65, 40}), torch::empty({65, 70}), y));
  EXPECT_THROW(row_dots_out(torch::empty({3, 3}), x.narrow(0, 0, 3), y), c10::Error);
}

TEST(ShortProducts, StatsCountEveryProductTheKernelsMakeAndNoOther) {
  // m > kShortSideRows, so that a product of 65 rows by m goes to LibTorch.
  const int64_t n = 1 + torch::randint(32, {1}).item<int64_t>(), k = 1 + torch::randint(32, {1}).item<int64_t>(),
                m = 65 + torch::randint(300, {1}).item<int64_t>(), d = 1 + torch::randint(200, {1}).item<int64_t>();
  const auto x = torch::randn({n, d}), y = torch::randn({m, d}), w = torch::randn({k, m});
  auto scores = torch::empty({n, m}), transposed = torch::empty({m, n}), sums = torch::zeros({k, d});
  const auto before = short_product_stats();
  row_dots_out(scores, x, y);
  row_dots_out(transposed, y, x);
  add_weighted_rows_(sums, w, y);
  // Sent to LibTorch: not counted.
  auto long_out = torch::empty({65, m});
  row_dots_out(long_out, torch::randn({65, d}), y);
  auto long_sums = torch::zeros({65, d});
  add_weighted_rows_(long_sums, torch::randn({65, m}), y);
  const auto after = short_product_stats();
  EXPECT_EQ(after.calls - before.calls, 3);
  EXPECT_EQ(after.flop - before.flop, 2.0 * (2 * n + k) * m * d);
  EXPECT_GT(after.seconds, before.seconds);
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

struct LossAndGradients {
  torch::Tensor loss, grad_queries, grad_passages;
};

// ContAccum's loss for one micro-batch of 32 against banks of 200 (two
// passages an example, cosine): every product of the tiled loss is short.
LossAndGradients banked_loss(torch::ScalarType type) {
  // The same float32 numbers whatever the type computed in.
  torch::manual_seed(21);
  const auto q = torch::randn({32, 48}).to(type).requires_grad_(true);
  const auto p = torch::randn({32, 2, 48}).to(type).requires_grad_(true);
  InfoNCEBank bank;
  bank.queries = torch::randn({200, 48}).to(type);
  bank.passages = torch::randn({200, 2, 48}).to(type);
  const auto options = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05);
  auto loss = info_nce(q, p, options, bank).loss;
  loss.backward();
  return {loss.detach(), q.grad(), p.grad()};
}

TEST(ShortProducts, TheBankedLossIsTheSameBitsOnEveryInstructionSetAndMatchesFloat64) {
  ProductSettings restore;
  set_short_product_isa(ShortProductIsa::Portable);
  const auto portable = banked_loss(torch::kFloat);
  for (const auto isa : isas_this_cpu_runs()) {
    set_short_product_isa(isa);
    const auto vector = banked_loss(torch::kFloat);
    EXPECT_TRUE(same_bits(portable.loss.reshape({1}), vector.loss.reshape({1})));
    EXPECT_TRUE(same_bits(portable.grad_queries, vector.grad_queries));
    EXPECT_TRUE(same_bits(portable.grad_passages.reshape({32, -1}), vector.grad_passages.reshape({32, -1})));
  }
  set_short_products_enabled(false);
  const auto sgemm = banked_loss(torch::kFloat);
  set_short_products_enabled(true);
  const auto exact = banked_loss(torch::kDouble);  // float64: LibTorch's products
  for (const auto* result : {&portable, &sgemm}) {
    EXPECT_NEAR(result->loss.item<double>(), exact.loss.item<double>(), 1e-6 * exact.loss.abs().item<double>());
    EXPECT_TRUE(torch::allclose(result->grad_queries.to(torch::kDouble), exact.grad_queries, 1e-5, 1e-7));
    EXPECT_TRUE(torch::allclose(result->grad_passages.to(torch::kDouble), exact.grad_passages, 1e-5, 1e-7));
  }
  // And the short products did make them: without them the bits differ.
  EXPECT_FALSE(same_bits(portable.grad_queries, sgemm.grad_queries));
}

}  // namespace
}  // namespace contaccum
