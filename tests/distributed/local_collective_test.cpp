#include "test_util.h"

#include <contaccum/distributed/collective.h>

namespace contaccum {
namespace {

// World size 1: each collective is the identity, without a copy.
TEST(LocalCollective, IsTheIdentityAtWorldSizeOne) {
  auto c = local_collective();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_EQ(c.get(), local_collective().get());
  const auto x = torch::randn({3, 4});
  const auto gathered = c->all_gather(x);
  EXPECT_EQ(gathered.data_ptr(), x.data_ptr());
  EXPECT_EQ(gathered.sizes(), x.sizes());
  std::vector<torch::Tensor> grads = {torch::randn({5}), torch::randn({2, 2}, torch::kDouble)};
  const auto before = grads[0].clone(), before_double = grads[1].clone();
  c->all_reduce_sum(grads);
  EXPECT_TRUE(torch::equal(grads[0], before));
  EXPECT_TRUE(torch::equal(grads[1], before_double));
  auto y = x.clone();
  c->broadcast(y);
  EXPECT_TRUE(torch::equal(y, x));
}

TEST(LocalCollective, RejectsWhatNoWorldSizeAccepts) {
  auto c = local_collective();
  auto x = torch::randn({2});
  EXPECT_THAT(test::error_of([&] { c->broadcast(x, 1); }), ::testing::HasSubstr("root must be in [0, 1), got 1"));
  EXPECT_THAT(test::error_of([&] { c->all_gather(torch::tensor(1.0)); }), ::testing::HasSubstr("got a scalar"));
  std::vector<torch::Tensor> undefined(1);
  EXPECT_THAT(test::error_of([&] { c->all_reduce_sum(undefined); }), ::testing::HasSubstr("undefined"));
}

}  // namespace
}  // namespace contaccum
