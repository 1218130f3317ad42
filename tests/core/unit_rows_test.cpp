// unit_rows against LibTorch's own operations in float64: the same forward
// bits as the division it replaces, and its fused backward pass against
// autograd through x / x.norm().clamp_min(1e-12), on fresh random rows that
// include a zero row and rows shorter than the clamp.
#include <contaccum/core/unit_rows.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace contaccum {
namespace {

torch::Tensor reference(const torch::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(kUnitRowsMinNorm);
}

// Random rows of `shape`, with row 1 zero, rows 2 and 3 shorter than the
// clamp (their gradient is the upstream one times 1e12) and, in float64, row
// 4 exactly as long as it (LibTorch's clamp passes the gradient there, so
// the row is projected like a longer one; in float32 the clamp is float's
// nearest value to 1e-12, which the float64 reference would not take as
// equal).
torch::Tensor rows_with_short_ones(at::IntArrayRef shape, torch::ScalarType type) {
  auto x = torch::randn(shape, torch::kDouble).view({-1, shape.back()});
  x[1].zero_();
  x[2].mul_(1e-14);
  x[3].mul_(1e-15);
  if (type == torch::kDouble) {
    x[4].zero_();
    x[4][0] = kUnitRowsMinNorm;
  }
  return x.view(shape).to(type);
}

// d(sum(unit_rows(x) * w))/dx against autograd of the reference in float64
// on the same values, relative to the largest entry of each row's gradient.
void check_gradient(at::IntArrayRef shape, torch::ScalarType type, double tolerance) {
  const auto x0 = rows_with_short_ones(shape, type);
  const auto w = torch::randn(shape, torch::kDouble);
  auto x = x0.clone().requires_grad_(true);
  (unit_rows(x).to(torch::kDouble) * w).sum().backward();
  auto want_x = x0.to(torch::kDouble).requires_grad_(true);
  (reference(want_x) * w).sum().backward();
  const auto got = x.grad().to(torch::kDouble).view({-1, shape.back()});
  const auto want = want_x.grad().view({-1, shape.back()});
  const auto row_scale = want.abs().amax(1, /*keepdim=*/true).clamp_min(1e-30);
  EXPECT_LE(((got - want).abs() / row_scale).max().item<double>(), tolerance) << torch::toString(type);
}

TEST(UnitRows, ForwardIsTheDivisionBitForBit) {
  torch::manual_seed(11);
  namespace F = torch::nn::functional;
  for (auto type : {torch::kFloat, torch::kDouble}) {
    const auto x = rows_with_short_ones({9, 77}, type);
    EXPECT_TRUE(torch::equal(unit_rows(x), reference(x)));
    EXPECT_TRUE(torch::equal(unit_rows(x.clone().requires_grad_(true)).detach(), reference(x)));
    // What DualEncoder's `normalize` used before.
    EXPECT_TRUE(torch::equal(unit_rows(x), F::normalize(x, F::NormalizeFuncOptions().dim(1))));
  }
}

// The output may be changed in place before the backward pass (x is kept,
// not the output), and a broadcast upstream gradient (stride 0) is read as
// its values.
TEST(UnitRows, AnOutputChangedInPlaceAndABroadcastGradient) {
  torch::manual_seed(16);
  const auto x0 = rows_with_short_ones({6, 40}, torch::kDouble);
  auto x = x0.clone().requires_grad_(true);
  auto y = unit_rows(x);
  const auto sum = y.sum();
  y.detach().mul_(3.0);  // the caller's copy of the values, not the graph's
  sum.backward();
  auto want_x = x0.clone().requires_grad_(true);
  reference(want_x).sum().backward();
  const auto scale = want_x.grad().abs().amax(1, /*keepdim=*/true).clamp_min(1e-30);
  EXPECT_LE(((x.grad() - want_x.grad()).abs() / scale).max().item<double>(), 1e-12);
}

TEST(UnitRows, GradientMatchesAutogradInFloat64) {
  torch::manual_seed(12);
  // 37 rows of 1,031: the helper thread takes pieces of 15 rows.
  check_gradient({37, 1031}, torch::kDouble, 1e-12);
  check_gradient({4, 5, 64}, torch::kDouble, 1e-12);
}

TEST(UnitRows, GradientMatchesAutogradInFloat32) {
  torch::manual_seed(13);
  check_gradient({37, 1031}, torch::kFloat, 2e-6);
}

TEST(UnitRows, OtherLayoutsAndTypesTakeLibTorchsOperations) {
  torch::manual_seed(14);
  // A transposed view: the output is not contiguous, so the backward pass
  // takes LibTorch's operations; the same gradient.
  const auto base = rows_with_short_ones({6, 64}, torch::kDouble);
  auto x = base.t().contiguous().t().requires_grad_(true);  // [6, 64], column-major, with short rows
  ASSERT_FALSE(x.is_contiguous());
  const auto w = torch::randn({6, 64}, torch::kDouble);
  (unit_rows(x) * w).sum().backward();
  auto want_x = x.detach().clone().requires_grad_(true);
  (reference(want_x) * w).sum().backward();
  const auto scale = want_x.grad().abs().amax(1, /*keepdim=*/true).clamp_min(1e-30);
  EXPECT_LE(((x.grad() - want_x.grad()).abs() / scale).max().item<double>(), 1e-12);
  check_gradient({8, 96}, torch::kBFloat16, 2e-2);
}

TEST(UnitRows, DifferentiatesTwiceThroughLibTorchsOperations) {
  torch::manual_seed(15);
  const auto x0 = torch::randn({5, 7}, torch::kDouble);
  const auto w = torch::randn({5, 7}, torch::kDouble);
  auto gradient_norm = [&](const torch::Tensor& x, bool ours) {
    const auto y = ours ? unit_rows(x) : reference(x);
    const auto g = torch::autograd::grad({(y * w).sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    return torch::autograd::grad({g.pow(2).sum()}, {x})[0];
  };
  const auto got = gradient_norm(x0.clone().requires_grad_(true), true);
  const auto want = gradient_norm(x0.clone().requires_grad_(true), false);
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-10);
}

}  // namespace
}  // namespace contaccum
