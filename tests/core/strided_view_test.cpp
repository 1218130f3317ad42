// narrow_view against LibTorch's narrow: the same view (sizes, strides,
// storage offset, the same memory) on fresh random tensors of several ranks,
// layouts (contiguous, transposed, already a slice) and every dimension, and
// a clear error outside the tensor.
#include <contaccum/core/operator_calls.h>
#include <contaccum/core/strided_view.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

namespace contaccum {
namespace {

TEST(NarrowView, IsNarrowsViewForEveryDimensionAndLayout) {
  std::mt19937 pick(static_cast<unsigned>(std::random_device{}()));
  const auto base = torch::randn({7, 5, 6});
  const std::vector<torch::Tensor> tensors = {base, base.transpose(0, 2), base.narrow(1, 1, 3), base.select(2, 4),
                                              base.reshape({35, 6}).t()};
  for (const auto& t : tensors) {
    for (int64_t dim = 0; dim < t.dim(); ++dim) {
      for (int trial = 0; trial < 5; ++trial) {
        const int64_t start = std::uniform_int_distribution<int64_t>(0, t.size(dim))(pick);
        const int64_t length = std::uniform_int_distribution<int64_t>(0, t.size(dim) - start)(pick);
        const auto expected = t.narrow(dim, start, length), got = narrow_view(t, dim, start, length);
        EXPECT_EQ(got.sizes(), expected.sizes());
        EXPECT_EQ(got.strides(), expected.strides());
        EXPECT_EQ(got.storage_offset(), expected.storage_offset());
        EXPECT_TRUE(got.is_alias_of(t));
        EXPECT_TRUE(torch::equal(got, expected));
      }
    }
  }
}

// A whole dimension is the tensor itself, with no operator call; any other
// range is one call (as_strided), where narrow makes three.
TEST(NarrowView, TakesAWholeDimensionWithoutAnOperatorCall) {
  const auto t = torch::randn({4, 3});
  torch::Tensor whole_rows, whole_columns, part;
  EXPECT_EQ(count_operator_calls([&] {
              whole_rows = narrow_view(t, 0, 0, 4);
              whole_columns = narrow_view(t, 1, 0, 3);
            }),
            0);
  EXPECT_EQ(whole_rows.unsafeGetTensorImpl(), t.unsafeGetTensorImpl());
  EXPECT_EQ(whole_columns.unsafeGetTensorImpl(), t.unsafeGetTensorImpl());
  EXPECT_EQ(count_operator_calls([&] { part = narrow_view(t, 0, 1, 3); }), 1);
  EXPECT_TRUE(torch::equal(part, t.narrow(0, 1, 3)));
  EXPECT_GT(count_operator_calls([&] { part = t.narrow(0, 1, 3); }), 1);  // the counter counts
}

// A tensor that records no graph is its own detached form, with no call;
// one that does is detached.
TEST(Detached, IsTheTensorItselfUnlessItRecordsAGraph) {
  const auto constant = torch::randn({3, 2});
  torch::Tensor same;
  EXPECT_EQ(count_operator_calls([&] { same = detached(constant); }), 0);
  EXPECT_EQ(same.unsafeGetTensorImpl(), constant.unsafeGetTensorImpl());
  const auto leaf = torch::randn({3, 2}, torch::requires_grad());
  const auto product = leaf * 2;
  const auto cut = detached(product);
  EXPECT_FALSE(cut.requires_grad());
  EXPECT_FALSE(cut.grad_fn());
  EXPECT_TRUE(cut.is_alias_of(product));
  EXPECT_TRUE(torch::equal(cut, product));
}

TEST(NarrowView, RefusesARangeOutsideTheTensor) {
  const auto t = torch::zeros({4, 3});
  EXPECT_THROW(narrow_view(t, 0, 3, 2), c10::Error);
  EXPECT_THROW(narrow_view(t, 1, -1, 1), c10::Error);
  EXPECT_THROW(narrow_view(t, 2, 0, 1), c10::Error);
  try {
    narrow_view(t, 0, 3, 2);
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 5) of dimension 0 is outside [4, 3]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace contaccum
