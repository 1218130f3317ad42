#include <contaccum/core/compute_threads.h>
#include <contaccum/train/fused_adamw.h>
#include <contaccum/train/optimizer.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "test_util.h"

namespace contaccum {
namespace {

// Parameters whose sizes leave tails after any vector width, and one larger
// than the kernel's parallel grain (so threads split it).
std::vector<torch::Tensor> make_parameters(torch::Dtype dtype, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> params;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{37, 29}, {5}, {129}, {300001}, {16, 16}}) {
    params.push_back(torch::randn(shape, torch::TensorOptions().dtype(dtype)).requires_grad_());
  }
  return params;
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

// Two groups as make_adamw builds them: decay for matrices, none otherwise.
template <typename Optimizer>
std::unique_ptr<Optimizer> adamw_over(const std::vector<torch::Tensor>& params, double wd) {
  std::vector<torch::Tensor> decay, plain;
  for (const auto& p : params) (p.dim() >= 2 ? decay : plain).push_back(p);
  auto options = [](double w) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(1e-3).betas({0.9, 0.98}).eps(1e-6).weight_decay(w));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(wd));
  groups.emplace_back(plain, options(0.0));
  return std::make_unique<Optimizer>(groups, torch::optim::AdamWOptions(1e-3));
}

// Fresh random gradients, the same for both parameter lists; on some steps a
// parameter gets none (AdamW then leaves it and its state alone).
void set_gradients(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, int step) {
  for (size_t i = 0; i < a.size(); ++i) {
    if ((step + static_cast<int>(i)) % 7 == 3) {
      a[i].mutable_grad() = torch::Tensor();
      b[i].mutable_grad() = torch::Tensor();
      continue;
    }
    // Gradients spanning many magnitudes, some exactly zero.
    auto g = torch::randn_like(a[i]) * torch::pow(10.0, torch::randint(-6, 3, a[i].sizes(), a[i].options()));
    g.masked_fill_(torch::rand_like(g) < 0.05, 0.0);
    a[i].mutable_grad() = g.clone();
    b[i].mutable_grad() = g.clone();
  }
}

void expect_bitwise_equal(const torch::optim::Optimizer& fused, const std::vector<torch::Tensor>& fused_params,
                          const torch::optim::Optimizer& reference, const std::vector<torch::Tensor>& ref_params,
                          const std::string& where) {
  for (size_t i = 0; i < fused_params.size(); ++i) {
    ASSERT_TRUE(torch::equal(fused_params[i], ref_params[i])) << where << " parameter " << i;
    const auto* f = adamw_state(fused, fused_params[i]);
    const auto* r = adamw_state(reference, ref_params[i]);
    ASSERT_EQ(f == nullptr, r == nullptr) << where << " parameter " << i;
    if (f == nullptr) continue;
    ASSERT_EQ(f->step(), r->step()) << where << " parameter " << i;
    ASSERT_TRUE(torch::equal(f->exp_avg(), r->exp_avg())) << where << " exp_avg " << i;
    ASSERT_TRUE(torch::equal(f->exp_avg_sq(), r->exp_avg_sq())) << where << " exp_avg_sq " << i;
  }
}

class FusedAdamWExact : public ::testing::TestWithParam<std::tuple<torch::Dtype, int>> {};

// The learning rate changes every step (as under a schedule), and weights,
// moments and step counts must equal torch::optim::AdamW's bit for bit.
TEST_P(FusedAdamWExact, EqualsTorchAdamWBitForBit) {
  const auto [dtype, threads] = GetParam();
  // Both LibTorch's threads and the helper's (which follow OpenBLAS's).
  const test::ComputeThreadsGuard restore;
  set_compute_threads(threads);
  auto fused_params = make_parameters(dtype, 5);
  auto ref_params = copies(fused_params);
  auto fused = adamw_over<FusedAdamW>(fused_params, 0.05);
  auto reference = adamw_over<torch::optim::AdamW>(ref_params, 0.05);
  for (int step = 0; step < 60; ++step) {
    set_gradients(fused_params, ref_params, step);
    const double lr = 1e-3 * (1.0 + 0.37 * std::sin(step));
    set_learning_rate(*fused, lr);
    set_learning_rate(*reference, lr);
    fused->step();
    reference->step();
    expect_bitwise_equal(*fused, fused_params, *reference, ref_params, "step " + std::to_string(step + 1));
    if (HasFatalFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesAndThreads, FusedAdamWExact,
                         ::testing::Values(std::make_tuple(torch::kFloat, 1), std::make_tuple(torch::kFloat, 2),
                                           std::make_tuple(torch::kDouble, 1), std::make_tuple(torch::kDouble, 2),
                                           // bf16 parameters take torch's in-place sequence, as on a GPU
                                           std::make_tuple(torch::kBFloat16, 1)));

// Each class reads the other's archive and both continue identically.
TEST(FusedAdamW, CheckpointsAreTorchAdamWCheckpoints) {
  auto fused_params = make_parameters(torch::kFloat, 8);
  auto ref_params = copies(fused_params);
  auto fused = adamw_over<FusedAdamW>(fused_params, 0.01);
  auto reference = adamw_over<torch::optim::AdamW>(ref_params, 0.01);
  for (int step = 0; step < 5; ++step) {
    set_gradients(fused_params, ref_params, step);
    fused->step();
    reference->step();
  }
  // Swap: a fresh FusedAdamW loads AdamW's archive and vice versa.
  auto fused_loaded = adamw_over<FusedAdamW>(fused_params, 0.01);
  auto ref_loaded = adamw_over<torch::optim::AdamW>(ref_params, 0.01);
  auto from_reference = test::through_bytes(*reference);
  fused_loaded->load(from_reference);
  auto from_fused = test::through_bytes(*fused);
  ref_loaded->load(from_fused);
  for (int step = 5; step < 12; ++step) {
    set_gradients(fused_params, ref_params, step);
    fused_loaded->step();
    ref_loaded->step();
    expect_bitwise_equal(*fused_loaded, fused_params, *ref_loaded, ref_params,
                         "after load, step " + std::to_string(step + 1));
  }
}

// Lazy Adam written out with tensor operations on the selected rows, in
// float64: only rows with a non-zero gradient change, by the dense update.
TEST(FusedAdamW, RowSparseIsLazyAdam) {
  torch::manual_seed(21);
  const double lr = 0.01, wd = 0.1, beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  auto table = torch::randn({300, 24}, torch::kDouble).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{table},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(wd)));
  FusedAdamW optimizer(groups, torch::optim::AdamWOptions(lr));
  optimizer.set_row_sparse(table);
  auto p = table.detach().clone();
  auto m = torch::zeros_like(p), v = torch::zeros_like(p);
  for (int t = 1; t <= 25; ++t) {
    // A few rows get a gradient, as an embedding table's batch touches them.
    auto rows = torch::randperm(300, torch::kLong).slice(0, 0, 20 + t);
    auto grad = torch::zeros_like(p);
    grad.index_put_({rows}, torch::randn({rows.size(0), 24}, torch::kDouble));
    table.mutable_grad() = grad.clone();
    const auto before = table.detach().clone();
    optimizer.step();

    const auto r = std::get<0>(torch::sort(rows));
    const auto g = grad.index_select(0, r);
    const auto mr = m.index_select(0, r) * beta1 + g * (1 - beta1);
    const auto vr = v.index_select(0, r) * beta2 + g * g * (1 - beta2);
    const double bc1 = 1 - std::pow(beta1, t), bc2 = 1 - std::pow(beta2, t);
    const auto pr = p.index_select(0, r) * (1 - lr * wd) - (lr / bc1) * mr / (vr.sqrt() / std::sqrt(bc2) + eps);
    m.index_copy_(0, r, mr);
    v.index_copy_(0, r, vr);
    p.index_copy_(0, r, pr);

    EXPECT_TRUE(torch::allclose(table.detach(), p, 1e-12, 1e-14)) << "step " << t;
    const auto* state = adamw_state(optimizer, table);
    ASSERT_NE(state, nullptr);
    EXPECT_EQ(state->step(), t);
    EXPECT_TRUE(torch::allclose(state->exp_avg(), m, 1e-12, 1e-14)) << "step " << t;
    EXPECT_TRUE(torch::allclose(state->exp_avg_sq(), v, 1e-12, 1e-14)) << "step " << t;
    // Rows without gradient are untouched to the bit.
    auto untouched = torch::ones({300}, torch::kBool);
    untouched.index_put_({rows}, false);
    EXPECT_TRUE(torch::equal(table.detach().index({untouched}), before.index({untouched}))) << "step " << t;
  }
}

TEST(FusedAdamW, MakeAdamWBuildsItAndMarksEmbeddingTables) {
  torch::nn::Sequential net(torch::nn::Embedding(50, 8), torch::nn::Linear(8, 3));
  auto fused = make_adamw(*net, AdamWSetup().row_sparse_embeddings(true));
  auto* as_fused = dynamic_cast<FusedAdamW*>(fused.get());
  ASSERT_NE(as_fused, nullptr);
  const auto params = net->named_parameters();
  EXPECT_TRUE(as_fused->is_row_sparse(params["0.weight"]));
  EXPECT_FALSE(as_fused->is_row_sparse(params["1.weight"]));
  auto plain = make_adamw(*net, AdamWSetup().fused(false));
  EXPECT_EQ(dynamic_cast<FusedAdamW*>(plain.get()), nullptr);
  EXPECT_THAT(test::error_of([&] { make_adamw(*net, AdamWSetup().fused(false).row_sparse_embeddings(true)); }),
              ::testing::HasSubstr("row_sparse_embeddings needs fused = true"));
}

// A parameter that is not contiguous (a transposed view) takes torch's
// in-place sequence: the fused loop reads by address.
TEST(FusedAdamW, ANonContiguousParameterIsTorchAdamWBitForBit) {
  torch::manual_seed(41);
  auto base = torch::randn({6, 9});
  auto fused_param = base.clone().t().requires_grad_(), ref_param = base.clone().t().requires_grad_();
  ASSERT_FALSE(fused_param.is_contiguous());
  FusedAdamW fused({fused_param}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  torch::optim::AdamW reference({ref_param}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const auto g = torch::randn({9, 6});
    fused_param.mutable_grad() = g.clone();
    ref_param.mutable_grad() = g.clone();
    fused.step();
    reference.step();
    ASSERT_TRUE(torch::equal(fused_param, ref_param)) << "step " << step + 1;
  }
}

TEST(FusedAdamW, RefusesWhatItDoesNotImplement) {
  auto w = torch::randn({4, 3}).requires_grad_();
  FusedAdamW amsgrad({w}, torch::optim::AdamWOptions(0.1).amsgrad(true));
  w.mutable_grad() = torch::ones_like(w);
  EXPECT_THAT(test::error_of([&] { amsgrad.step(); }), ::testing::HasSubstr("does not implement amsgrad"));
  FusedAdamW plain({w}, torch::optim::AdamWOptions(0.1));
  auto other = torch::randn({4, 3});
  EXPECT_THAT(test::error_of([&] { plain.set_row_sparse(other); }),
              ::testing::HasSubstr("not one of this optimizer's parameters"));
  auto bias = torch::randn({3}).requires_grad_();
  FusedAdamW biased({bias}, torch::optim::AdamWOptions(0.1));
  EXPECT_THAT(test::error_of([&] { biased.set_row_sparse(bias); }), ::testing::HasSubstr("must be 2-d"));
  auto table = torch::randn({4, 3}, torch::kBFloat16).requires_grad_();
  FusedAdamW lazy({table}, torch::optim::AdamWOptions(0.1));
  lazy.set_row_sparse(table);
  table.mutable_grad() = torch::ones_like(table);
  EXPECT_THAT(test::error_of([&] { lazy.step(); }),
              ::testing::HasSubstr("row-sparse updates run on contiguous float32 or float64 CPU parameters only, "
                                   "got BFloat16 on cpu"));
}

}  // namespace
}  // namespace contaccum
