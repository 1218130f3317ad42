#include <contaccum/core/compute_threads.h>
#include <contaccum/train/optimizer.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "test_util.h"

namespace contaccum {
namespace {

// After AdamW's first step m_hat = g and v_hat = g^2, so each entry moves by
// lr * g / (|g| + eps) plus, for decayed parameters, lr * wd * p (decoupled,
// applied to the old value). Computed here in float64 from the formula.
TEST(MakeAdamW, DecaysMatricesButNotBiasesOrLayerNorm) {
  torch::manual_seed(11);
  torch::nn::Sequential net(torch::nn::Linear(5, 4), torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})),
                            torch::nn::Linear(4, 3));
  net->to(torch::kDouble);
  const double lr = 0.1, wd = 0.3, eps = 1e-8;
  auto opt = make_adamw(*net, AdamWSetup().lr(lr).weight_decay(wd).eps(eps));
  ASSERT_EQ(opt->param_groups().size(), 2u);
  EXPECT_EQ(opt->param_groups()[0].params().size(), 2u);  // the two Linear weights
  EXPECT_EQ(opt->param_groups()[1].params().size(), 4u);  // two biases, LayerNorm weight and bias

  auto x = torch::randn({7, 5}, torch::kDouble);
  net->forward(x).pow(2).sum().backward();
  std::vector<torch::Tensor> before, grads;
  for (const auto& p : net->parameters()) {
    before.push_back(p.detach().clone());
    grads.push_back(p.grad().clone());
  }
  opt->step();
  const auto params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const bool decayed = params[i].dim() >= 2;
    auto expected = before[i] - lr * grads[i] / (grads[i].abs() + eps);
    if (decayed) expected -= lr * wd * before[i];
    EXPECT_TRUE(torch::allclose(params[i], expected, 1e-12, 1e-12)) << "parameter " << i;
  }
}

TEST(MakeAdamW, SetLearningRateReachesEveryGroup) {
  torch::nn::Linear lin(3, 2);
  auto opt = make_adamw(*lin);
  set_learning_rate(*opt, 0.25);
  for (const auto& g : opt->param_groups()) EXPECT_DOUBLE_EQ(g.options().get_lr(), 0.25);
}

TEST(MakeAdamW, RejectsBadOptions) {
  torch::nn::Linear lin(3, 2);
  EXPECT_THAT([&] { make_adamw(*lin, AdamWSetup().weight_decay(-1)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("weight_decay must be >= 0, got -1")));
  EXPECT_THAT([&] { make_adamw(*lin, AdamWSetup().beta2(1.0)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("beta2 must be in [0, 1), got 1")));
}

// zero_gradients keeps each gradient's memory and writes +0.0 everywhere: a
// large one (12 MB, shared out with the helper thread in 1 MiB chunks and a
// tail), a small one, and a non-contiguous view, on one thread and two.
TEST(ZeroGradients, ZerosEveryElementInPlace) {
  const test::ComputeThreadsGuard restore;
  for (const int threads : {1, 2}) {
    if (restore.blas > 0) set_compute_threads(threads);
    auto big = torch::randn({3000001}).requires_grad_();
    auto small = torch::randn({7, 3}).requires_grad_();
    auto strided = torch::randn({64, 40}).requires_grad_();
    big.mutable_grad() = -torch::rand_like(big) - 1.0;  // negative, so -0.0 would show
    small.mutable_grad() = torch::randn_like(small);
    strided.mutable_grad() = torch::empty_strided({64, 40}, {1, 64}).normal_();  // not contiguous
    const void* where = big.grad().data_ptr();
    torch::optim::SGD sgd(std::vector<torch::Tensor>{big, small, strided}, torch::optim::SGDOptions(0.1));
    zero_gradients(sgd);
    EXPECT_EQ(big.grad().data_ptr(), where) << "the gradient was reallocated";
    for (const auto& p : {big, small, strided}) {
      EXPECT_EQ(p.grad().count_nonzero().item<int64_t>(), 0) << threads << " thread(s)";
      EXPECT_FALSE(torch::signbit(p.grad()).any().item<bool>()) << "-0.0 written";
    }
  }
}

}  // namespace
}  // namespace contaccum
