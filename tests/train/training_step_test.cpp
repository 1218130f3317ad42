// TrainingStep, the public optimizer step: one step equals the step written
// out by hand with LibTorch's own clipping (an independent oracle), a step
// that is not finite changes nothing, and a hand-written data-parallel loop
// of it on two ranks trains the weights one process does.
#include "test_util.h"

#include <contaccum/distributed/process_group.h>

#include <torch/nn/utils/clip_grad.h>

#include <thread>

namespace contaccum {
namespace {

using test::make_model;
using test::random_batch;

DualEncoder step_test_model() {
  torch::manual_seed(21);
  return make_model(0.0);
}

std::vector<torch::Tensor> parameters_now(const DualEncoder& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

void expect_parameters_close(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want,
                             double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::allclose(got[i], want[i], tolerance, tolerance))
        << "parameter " << i << " differs by " << (got[i] - want[i]).abs().max().item<double>();
  }
}

// Clipping that bites (max norm far below the gradients'), SGD with
// momentum: the step against zero_grad / compute_gradients /
// clip_grad_norm_ / step written out (LibTorch sums the norm in the
// parameters' dtype, here float64: equal within rounding).
TEST(TrainingStep, EqualsTheStepWrittenOutWithLibTorchsClipping) {
  torch::manual_seed(3);
  std::vector<TrainingBatch> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(random_batch(8, 1));
  const auto options = StrategyOptions::contaccum(8, 2, 8);
  const double max_norm = 0.01;

  auto model = step_test_model();
  Strategy strategy(model, options);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  TrainingStep step(model, strategy, sgd, local_collective(), TrainingStepOptions().max_grad_norm(max_norm));

  auto reference = step_test_model();
  Strategy reference_strategy(reference, options);
  torch::optim::SGD reference_sgd(reference->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int64_t s = 0; s < 3; ++s) {
    const auto result = step.run(batches[static_cast<size_t>(s)], s + 1);
    EXPECT_TRUE(result.non_finite.empty());
    EXPECT_GT(result.grad_norms.total, 10 * max_norm) << "the clipping must bite for the test to mean anything";

    reference_sgd.zero_grad();
    const auto stats = reference_strategy.compute_gradients(batches[static_cast<size_t>(s)]);
    torch::nn::utils::clip_grad_norm_(reference->parameters(), max_norm);
    reference_sgd.step();
    EXPECT_NEAR(result.stats.loss, stats.loss, 1e-12);
    expect_parameters_close(parameters_now(model), parameters_now(reference), 1e-12);
  }
}

// A step whose loss is not finite: with Skip nothing moves (weights,
// optimizer, banks) and it is counted; with Error it throws naming the step.
TEST(TrainingStep, AStepThatIsNotFiniteChangesNothing) {
  torch::manual_seed(4);
  auto model = step_test_model();
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 8));
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  TrainingStep skip(model, strategy, sgd, local_collective(),
                    TrainingStepOptions().non_finite(NonFinitePolicy::Skip).max_consecutive_skips(5));
  skip.run(random_batch(8, 1), 1);
  const auto bank_before = strategy.passage_bank().view().clone();
  auto bad = random_batch(8, 1);
  {
    torch::NoGradGuard no_grad;
    model->query_encoder()->parameters().front().mul_(std::numeric_limits<double>::infinity());
  }
  const auto poisoned = parameters_now(model);
  const auto result = skip.run(bad, 2);
  EXPECT_FALSE(result.non_finite.empty());
  EXPECT_EQ(skip.skipped_steps(), 1);
  EXPECT_EQ(skip.consecutive_skips(), 1);
  const auto after = parameters_now(model);
  ASSERT_EQ(after.size(), poisoned.size());
  for (size_t i = 0; i < after.size(); ++i) {
    // Bit for bit, infinities and NaNs included.
    EXPECT_TRUE(torch::equal(after[i].nan_to_num(0, 1, -1), poisoned[i].nan_to_num(0, 1, -1))) << "parameter " << i;
  }
  EXPECT_TRUE(torch::equal(strategy.passage_bank().view(), bank_before)) << "the step's bank writes are undone";
  TrainingStep strict(model, strategy, sgd);
  EXPECT_THAT(test::error_of([&] { strict.run(bad, 7); }), ::testing::HasSubstr("step 7 is not finite"));
}

// Two ranks, each with its half of every batch (micro-batch n), driving
// TrainingStep from a hand-written loop after synchronize_replicas: the
// weights of one process with micro-batch 2n, for an optimizer the library
// does not make (Adagrad).
TEST(TrainingStep, AHandWrittenDataParallelLoopTrainsWhatOneProcessDoes) {
  constexpr int64_t kWorld = 2, kPerRank = 2, kTotal = 8;
  torch::manual_seed(5);
  std::vector<TrainingBatch> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(random_batch(kTotal, 1));
  const auto options = [](int64_t micro) { return StrategyOptions::contaccum(kTotal, micro, 16); };

  auto one = step_test_model();
  Strategy one_strategy(one, options(kWorld * kPerRank));
  torch::optim::Adagrad one_optimizer(one->parameters(), torch::optim::AdagradOptions(0.05));
  TrainingStep one_step(one, one_strategy, one_optimizer);
  for (int64_t s = 0; s < 3; ++s) one_step.run(batches[static_cast<size_t>(s)], s + 1);

  auto collectives = make_in_process_group(kWorld, DistributedOptions().timeout_seconds(60));
  std::vector<DualEncoder> models;
  torch::manual_seed(99);  // rank 1 draws other weights: synchronize_replicas must replace them
  models.push_back(step_test_model());
  models.push_back(make_model(0.0));
  std::vector<std::string> errors(kWorld);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto& model = models[static_cast<size_t>(r)];
        const auto& collective = collectives[static_cast<size_t>(r)];
        synchronize_replicas(model, *collective, 17);
        Strategy strategy(model, options(kPerRank));
        strategy.set_collective(collective);
        torch::optim::Adagrad optimizer(model->parameters(), torch::optim::AdagradOptions(0.05));
        TrainingStep step(model, strategy, optimizer, collective);
        for (int64_t s = 0; s < 3; ++s) step.run(batches[static_cast<size_t>(s)], s + 1);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < kWorld; ++r) {
    ASSERT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
    expect_parameters_close(parameters_now(models[static_cast<size_t>(r)]), parameters_now(one), 1e-10);
  }
}

}  // namespace
}  // namespace contaccum
