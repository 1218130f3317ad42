// The dynamic loss scaler (fp16's GradScaler, in C++), on float32 tensors:
// unscaling and overflow detection, the scale's backoff and growth, an
// overflowing step skipped and counted in metrics.jsonl with nothing applied,
// scaled training equal to unscaled training (GradCache's cached gradients
// included), and its state through a checkpoint.
#include "test_util.h"
#include "train/train_fixture.h"

#include <gmock/gmock.h>

#include <limits>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

TEST(LossScaler, UnscalesInPlaceAndFindsNonFiniteEntries) {
  LossScaler scaler(LossScalerOptions().init_scale(8.0));
  auto a = torch::ones({3}, torch::requires_grad()), b = torch::ones({2}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({8.0F, 16.0F, -4.0F});
  b.mutable_grad() = torch::tensor({2.0F, 0.0F});
  EXPECT_FALSE(scaler.unscale({a, b}));
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({1.0F, 2.0F, -0.5F})));
  EXPECT_TRUE(torch::equal(b.grad(), torch::tensor({0.25F, 0.0F})));
  for (const float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    b.mutable_grad() = torch::tensor({1.0F, bad});
    EXPECT_TRUE(scaler.unscale({a, b})) << bad;
  }
}

TEST(LossScaler, BacksOffOnAnOverflowAndGrowsAfterTheInterval) {
  LossScaler scaler(LossScalerOptions().init_scale(1024).growth_interval(3).min_scale(100));
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.overflow_steps(), 1);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 512);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 1024);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  scaler.update(false);
  scaler.update(true);  // an overflow resets the count of clean steps
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 512);
  scaler.update(true);
  scaler.update(true);
  EXPECT_THAT(test::error_of([&] { scaler.update(true); }),
              HasSubstr("the loss scale fell to 64 (below min_scale 100)"));
  EXPECT_THAT(test::error_of([] { LossScaler(LossScalerOptions().backoff_factor(1.0)); }),
              HasSubstr("backoff_factor must be in (0, 1), got 1"));
}

TEST(LossScaler, ItsStateRoundTripsAndBadStateIsRefused) {
  LossScaler scaler(LossScalerOptions().init_scale(256).growth_interval(5));
  scaler.update(true);
  scaler.update(false);
  scaler.update(false);
  auto in = test::through_bytes(scaler);
  LossScaler restored(LossScalerOptions().init_scale(256).growth_interval(5));
  restored.load(in);
  EXPECT_EQ(restored.scale(), 128);
  EXPECT_EQ(restored.growth_tracker(), 2);
  EXPECT_EQ(restored.overflow_steps(), 1);
  auto again = test::through_bytes(scaler);
  LossScaler shorter(LossScalerOptions().growth_interval(2));
  EXPECT_THAT(test::error_of([&] { shorter.load(again); }), HasSubstr("growth_tracker 2"));
}

struct ScaledTraining : ::testing::Test {
  std::shared_ptr<TrainingSet> set = test::tiny_training_set(48);
  Collator collator{test::hashing_tokenizer(test::kTinyVocab)};
  test::TempDir dir;

  std::vector<torch::Tensor> train(const StrategyOptions& strategy, TrainerOptions options, int64_t steps) {
    torch::manual_seed(4);
    DualEncoder model(
        BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(test::kTinyVocab, 16).embedding_dim(12)).ptr(),
        BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(test::kTinyVocab, 16).embedding_dim(12)).ptr());
    Trainer trainer(model, strategy, set, collator, options.max_steps(steps));
    trainer.train();
    if (trainer.loss_scaler()) scale = trainer.loss_scaler()->scale();
    std::vector<torch::Tensor> out;
    for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
    return out;
  }
  double scale = 0.0;
};

// A scale of 2^10 in float32 multiplies and divides exactly: scaled training
// is unscaled training up to float rounding, GradCache's cached
// representation gradients (which carry the scale) included.
TEST_F(ScaledTraining, EqualsUnscaledTraining) {
  const auto strategy = StrategyOptions::contaccum_grad_cache(16, 4, 32);
  auto options = test::tiny_trainer_options((dir.path / "plain").string());
  const auto plain = train(strategy, options, 6);
  const auto scaled = train(strategy,
                            options.output_dir((dir.path / "scaled").string())
                                .loss_scaling(true)
                                .loss_scaler(LossScalerOptions().init_scale(1024).growth_interval(4)),
                            6);
  EXPECT_EQ(scale, 2048) << "6 clean steps with growth_interval 4 double the scale once";
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_TRUE(torch::allclose(scaled[i], plain[i], 1e-5, 1e-6)) << "parameter " << i;
  }
  const auto lines = test::read_jsonl(dir.path / "scaled" / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0]["loss_scale"], 1024);
  EXPECT_EQ(lines[5]["loss_scale"], 2048);
  EXPECT_FALSE(test::read_jsonl(dir.path / "plain" / "metrics.jsonl")[0].contains("loss_scale"));
}

// A scale so large that the scaled loss overflows float32 (1e300 is
// infinite as a float): the step is
// skipped as an overflow (not a non-finite error), nothing is applied, the
// scale backs off, and training goes on; a resumed run has the scale.
TEST_F(ScaledTraining, AnOverflowSkipsTheStepAndBacksOff) {
  const auto strategy = StrategyOptions::contaccum(16, 4, 32);
  auto options = test::tiny_trainer_options(dir.path.string())
                     .loss_scaling(true)
                     .loss_scaler(LossScalerOptions().init_scale(1e300).backoff_factor(1e-292).growth_interval(1000));
  train(strategy, options, 3);
  EXPECT_DOUBLE_EQ(scale, 1e8);
  const auto lines = test::read_jsonl(dir.path / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[0]["overflow"].get<bool>());
  EXPECT_EQ(lines[0]["loss_scale"].get<double>(), 1e300);
  EXPECT_FALSE(lines[0].contains("non_finite"));
  EXPECT_FALSE(lines[1]["overflow"].get<bool>());
  EXPECT_DOUBLE_EQ(lines[1]["loss_scale"].get<double>(), 1e8);
  // A run of the overflowing step alone ends with the initial weights.
  const auto skipped_only = train(strategy, options.output_dir((dir.path / "one").string()), 1);
  torch::manual_seed(4);
  DualEncoder fresh(
      BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(test::kTinyVocab, 16).embedding_dim(12)).ptr(),
      BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(test::kTinyVocab, 16).embedding_dim(12)).ptr());
  const auto initial = fresh->parameters();
  for (size_t i = 0; i < initial.size(); ++i) EXPECT_TRUE(torch::equal(skipped_only[i], initial[i])) << i;
  // The scaler's state is in the checkpoint.
  auto resumed_options =
      test::tiny_trainer_options(dir.path.string())
          .loss_scaling(true)
          .loss_scaler(LossScalerOptions().init_scale(1e300).backoff_factor(1e-292).growth_interval(1000));
  Trainer resumed(fresh, strategy, set, collator, resumed_options.max_steps(3));
  ASSERT_TRUE(resumed.resume_latest());
  EXPECT_DOUBLE_EQ(resumed.loss_scaler()->scale(), 1e8);
  EXPECT_EQ(resumed.loss_scaler()->overflow_steps(), 1);
}

}  // namespace
}  // namespace contaccum
