// Mixed precision on the CPU (bf16 autocast): the guard's state handling, the
// towers' passes under autocast with full-precision representations, the
// strategies' losses against fp32, GradCache's replay under the first
// pass's autocast state, and banks stored in bf16.
#include "test_util.h"

#include <contaccum/core/precision.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

DualEncoder float_model(double dropout = 0.0) {
  return test::make_model(dropout, false, 97, 16, /*normalize=*/false, torch::kFloat);
}

// The largest gradient entry over the model's parameters.
double max_abs_diff(const std::vector<std::pair<std::string, torch::Tensor>>& a,
                    const std::vector<std::pair<std::string, torch::Tensor>>& b) {
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, (a[i].second - b[i].second).abs().max().item<double>());
  return diff;
}

TEST(AutocastGuard, EnablesBf16OnTheCpuAndRestoresWhatItFound) {
  ASSERT_FALSE(autocast_enabled(torch::kCPU));
  const auto before = autocast_dtype(torch::kCPU);
  {
    const AutocastGuard outer(torch::kCPU, Precision::Bf16);
    EXPECT_TRUE(autocast_enabled(torch::kCPU));
    EXPECT_EQ(autocast_dtype(torch::kCPU), torch::kBFloat16);
    const auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);
    {
      const AutocastGuard fp32(torch::kCPU, Precision::Fp32);  // no-op: stays inside the outer region
      EXPECT_TRUE(autocast_enabled(torch::kCPU));
    }
    EXPECT_TRUE(autocast_enabled(torch::kCPU));
  }
  EXPECT_FALSE(autocast_enabled(torch::kCPU));
  EXPECT_EQ(autocast_dtype(torch::kCPU), before);
  EXPECT_EQ(torch::matmul(torch::randn({4, 8}), torch::randn({8, 3})).scalar_type(), torch::kFloat);
}

TEST(AutocastGuard, Fp16OnTheCpuIsRefusedNamingWhereItRuns) {
  EXPECT_THAT(test::error_of([] { AutocastGuard(torch::kCPU, Precision::Fp16); }),
              HasSubstr("precision fp16 has no autocast on cpu devices"));
  EXPECT_TRUE(autocast_supported(torch::kCUDA, Precision::Fp16));
  EXPECT_EQ(enum_value<Precision>("bf16", "precision"), Precision::Bf16);
}

// The strategy's towers run in bf16 and hand the loss float32 rows: the
// losses differ from fp32's by bf16 rounding, not more, and not by nothing.
TEST(Precision, Bf16TowersGiveFloat32RepresentationsAndLossesNearFp32) {
  torch::manual_seed(3);
  const auto batch = test::random_batch(16, 1);
  std::vector<double> losses;
  for (const auto precision : {Precision::Fp32, Precision::Bf16}) {
    torch::manual_seed(5);
    auto model = float_model();
    Strategy strategy(model, StrategyOptions::grad_accum(16, 8).precision(precision));
    losses.push_back(test::step(strategy, batch).loss);
    for (const auto& p : model->parameters()) EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
  }
  EXPECT_NE(losses[0], losses[1]) << "bf16 changed nothing: the towers did not run under autocast";
  EXPECT_NEAR(losses[1], losses[0], 2e-2 * std::abs(losses[0]));
}

// Every strategy trains 50 steps in bf16 with losses within 3% of fp32's
// (same data, same initial weights, plain SGD).
TEST(Precision, EveryStrategyTrainsInBf16NearFp32) {
  torch::manual_seed(11);
  std::vector<TrainingBatch> pool;
  for (int i = 0; i < 5; ++i) pool.push_back(test::random_batch(16, 1));
  for (const auto& name : StrategyOptions::preset_names()) {
    std::vector<std::vector<double>> curves;
    for (const auto precision : {Precision::Fp32, Precision::Bf16}) {
      torch::manual_seed(7);
      auto model = float_model(0.1);
      auto options = StrategyOptions::from_preset(name, 16, 4, 32).precision(precision);
      Strategy strategy(model, options);
      std::vector<double> curve;
      for (int s = 0; s < 50; ++s) {
        curve.push_back(test::step(strategy, pool[static_cast<size_t>(s) % pool.size()]).loss);
        test::sgd(model, 0.5);
      }
      curves.push_back(curve);
    }
    // (From step 5: by then the banks are full and the negatives fixed.)
    EXPECT_LT(curves[0].back(), curves[0][4]) << name << " did not learn in fp32";
    for (size_t s = 0; s < curves[0].size(); ++s) {
      EXPECT_NEAR(curves[1][s], curves[0][s], 3e-2 * std::abs(curves[0][s])) << name << " step " << s + 1;
    }
  }
}

// A model cast to bf16 (its parameters bf16, not autocast) gives bf16
// representations, and the loss then computes its tiles in bf16: with the
// false negatives masked (the default; the identities come from the token
// ids) every preset's losses stay finite and near the float32 model's over
// its first steps, banks and score cache included.
TEST(Precision, AModelCastToBf16TrainsEveryStrategyWithMasking) {
  torch::manual_seed(21);
  std::vector<TrainingBatch> pool;
  for (int i = 0; i < 3; ++i) pool.push_back(test::random_batch(16, 1));
  pool[1].passages.input_ids[3] = pool[1].passages.input_ids[0];  // a false negative in batch
  pool[1].passages.attention_mask[3] = pool[1].passages.attention_mask[0];
  for (const auto& name : StrategyOptions::preset_names()) {
    std::vector<std::vector<double>> curves;
    for (const auto type : {torch::kFloat, torch::kBFloat16}) {
      torch::manual_seed(7);
      auto model = float_model();
      model->to(type);
      Strategy strategy(model, StrategyOptions::from_preset(name, 16, 4, 32));
      std::vector<double> curve;
      for (int s = 0; s < 6; ++s) {
        curve.push_back(test::step(strategy, pool[static_cast<size_t>(s) % pool.size()]).loss);
        test::sgd(model, 0.5);
      }
      curves.push_back(curve);
    }
    for (size_t s = 0; s < curves[0].size(); ++s) {
      ASSERT_TRUE(std::isfinite(curves[1][s])) << name << " step " << s + 1;
      EXPECT_NEAR(curves[1][s], curves[0][s], 5e-2 * std::abs(curves[0][s])) << name << " step " << s + 1;
    }
  }
}

// GradCache's replay runs under the first pass's autocast state (and random
// state): its bf16 gradients are full batch's bf16 gradients (encoded in the
// same chunks, so with the same dropout masks) up to float rounding, far
// closer than bf16 is to fp32. A replay outside autocast would recompute the
// towers in fp32 against bf16 cached gradients and land near neither.
TEST(Precision, GradCacheReplaysUnderTheFirstPassesAutocast) {
  torch::manual_seed(13);
  const auto batch = test::random_batch(32, 1);
  auto grads = [&](StrategyOptions options) {
    torch::manual_seed(17);
    auto model = float_model(0.1);
    Strategy strategy(model, options);
    test::step(strategy, batch);
    return test::grads_of(model);
  };
  const auto full_batch = StrategyOptions(32, 8).negatives(NegativeScope::TotalBatch);
  const auto full_bf16 = grads(StrategyOptions(full_batch).precision(Precision::Bf16));
  const auto cache_bf16 = grads(StrategyOptions::grad_cache(32, 8).precision(Precision::Bf16));
  const auto full_fp32 = grads(full_batch);
  const double replay = max_abs_diff(cache_bf16, full_bf16), rounding = max_abs_diff(full_bf16, full_fp32);
  EXPECT_GT(rounding, 0.0);
  EXPECT_LT(replay, 0.1 * rounding) << "GradCache in bf16 differs from full batch in bf16 by " << replay
                                    << ", bf16 from fp32 by " << rounding;
}

// Banks stored in bf16: half the bytes, the loss within bf16 rounding of
// fp32 banks, the score cache equal to a rebuild from the stored rows, and a
// checkpoint that continues bit for bit.
TEST(Precision, Bf16BanksHoldHalfTheBytesAndRoundTrip) {
  torch::manual_seed(19);
  std::vector<TrainingBatch> batches;
  for (int i = 0; i < 6; ++i) batches.push_back(test::random_batch(8, 1));
  auto run = [&](Precision bank_dtype, int steps, Strategy* keep = nullptr) {
    torch::manual_seed(23);
    auto model = float_model();
    Strategy strategy(model, StrategyOptions::contaccum(8, 4, 16).bank_dtype(bank_dtype));
    std::vector<double> losses;
    for (int s = 0; s < steps; ++s) losses.push_back(test::step(strategy, batches[static_cast<size_t>(s)]).loss);
    if (keep) *keep = std::move(strategy);
    return losses;
  };
  Strategy bf16(float_model(), StrategyOptions::contaccum(8, 4, 16));
  const auto fp32_losses = run(Precision::Fp32, 6), bf16_losses = run(Precision::Bf16, 6, &bf16);
  EXPECT_EQ(bf16.passage_bank().view().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bf16.query_bank().view().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bf16.passage_bank().view().nbytes() * 2, bf16.passage_bank().view().numel() * sizeof(float));
  EXPECT_NE(bf16_losses.back(), fp32_losses.back());
  for (size_t s = 0; s < fp32_losses.size(); ++s) EXPECT_NEAR(bf16_losses[s], fp32_losses[s], 1e-2 * fp32_losses[s]);
  const auto cached = bf16.bank_scores().row_logsumexp();
  const auto oracle = test::bank_logsumexp_oracle(bf16.query_bank(), bf16.passage_bank(), InfoNCEOptions());
  EXPECT_TRUE(torch::allclose(cached.to(torch::kDouble), oracle, 1e-5, 1e-5));
  EXPECT_EQ(cached.scalar_type(), torch::kFloat);
  // Resume after step 3: steps 4-6 as the straight run's.
  Strategy first(float_model(), StrategyOptions::contaccum(8, 4, 16));
  const auto head = run(Precision::Bf16, 3, &first);
  torch::manual_seed(23);
  auto model = float_model();
  Strategy resumed(model, StrategyOptions::contaccum(8, 4, 16).bank_dtype(Precision::Bf16));
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < model->parameters().size(); ++i)
      model->parameters()[i].copy_(first.model()->parameters()[i]);
  }
  auto archive = test::through_bytes(first);
  resumed.load(archive);
  EXPECT_EQ(resumed.passage_bank().view().scalar_type(), torch::kBFloat16);
  for (int s = 3; s < 6; ++s) {
    EXPECT_EQ(test::step(resumed, batches[static_cast<size_t>(s)]).loss, bf16_losses[static_cast<size_t>(s)])
        << "step " << s + 1;
  }
}

}  // namespace
}  // namespace contaccum
