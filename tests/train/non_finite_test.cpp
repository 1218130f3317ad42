// Nothing non-finite is ever applied or saved: a step whose loss or gradient
// is NaN or infinite (injected into one gradient, into the loss through a
// bank entry, or from a temperature of 1e-20) changes no weight, no optimizer
// state and no bank; the error policy stops naming the step, the skip policy
// counts it in metrics.jsonl and stops after too many in a row.
#include "test_util.h"
#include "train/train_fixture.h"

#include <gmock/gmock.h>

#include <limits>

namespace contaccum {
namespace {

using ::testing::HasSubstr;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::map<std::string, torch::Tensor> weights_of(const DualEncoder& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

void expect_same_weights(const std::map<std::string, torch::Tensor>& a, const DualEncoder& model) {
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(torch::equal(a.at(p.key()), p.value())) << p.key();
}

// Two bag-of-embeddings towers with attention pooling: its token-logit table
// is the one parameter whose gradient still passes through autograd (the
// embedding table and the projection add theirs into .grad directly), so a
// hook can poison it.
DualEncoder attention_dual_encoder(uint64_t seed) {
  torch::manual_seed(seed);
  auto tower = [] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(test::kTinyVocab, 16)
                                      .embedding_dim(12)
                                      .dropout(0.2)
                                      .pooling(BagPooling::Attention))
        .ptr();
  };
  return DualEncoder(tower(), tower());
}

struct NonFinite : ::testing::Test {
  std::shared_ptr<TrainingSet> set = test::tiny_training_set(48);
  Collator collator{test::hashing_tokenizer(test::kTinyVocab)};
  test::TempDir dir;
  DualEncoder model = attention_dual_encoder(1);
  // Weights, banks and optimizer moments after step 2, before the bad step.
  std::map<std::string, torch::Tensor> before;
  torch::Tensor query_bank_before, moments_before;
  // Makes step 3's (or every later step's) gradient of one weight infinite.
  void poison_gradient_from_step(Trainer& trainer, int64_t first, int64_t last) {
    auto weight = model->passage_encoder()->named_parameters()["token_logit.weight"];
    auto hook = std::make_shared<int>(-1);
    trainer.add_callback(std::make_shared<test::OnStepEnd>([&, weight, hook, first, last](TrainerState& s) mutable {
      if (s.step == first - 1) {
        remember(trainer);
        *hook = static_cast<int>(weight.register_hook([](torch::Tensor g) { return g + kInf; }));
      }
      if (s.step == last && *hook >= 0) weight.remove_hook(static_cast<unsigned>(*hook));
    }));
  }
  void remember(Trainer& trainer) {
    before = weights_of(model);
    query_bank_before = trainer.strategy().query_bank().view().clone();
    moments_before = optimizer_moments(trainer);
  }
  // Every AdamW moment and step count, flattened into one tensor.
  torch::Tensor optimizer_moments(Trainer& trainer) {
    std::vector<torch::Tensor> parts;
    for (const auto& group : trainer.optimizer().param_groups()) {
      for (const auto& p : group.params()) {
        const auto* state = adamw_state(trainer.optimizer(), p);
        if (state == nullptr) continue;
        const auto& adam = *state;
        parts.push_back(adam.exp_avg().flatten());
        parts.push_back(adam.exp_avg_sq().flatten());
        parts.push_back(torch::tensor({static_cast<float>(adam.step())}));
      }
    }
    return torch::cat(parts).clone();
  }
  void expect_step_undone(Trainer& trainer) {
    expect_same_weights(before, model);
    EXPECT_TRUE(torch::equal(trainer.strategy().query_bank().view(), query_bank_before));
    EXPECT_TRUE(torch::equal(optimizer_moments(trainer), moments_before)) << "optimizer state changed";
  }
};

TEST_F(NonFinite, AnInfiniteGradientStopsTheRunAndChangesNothing) {
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 32), set, collator,
                  test::tiny_trainer_options(dir.path.string()).checkpoint_every(1));
  poison_gradient_from_step(trainer, 3, 3);
  EXPECT_THAT(test::error_of([&] { trainer.train(); }),
              ::testing::AllOf(HasSubstr("step 3 is not finite"), HasSubstr("the passage tower's gradient norm is inf"),
                               HasSubstr("are those after step 2")));
  expect_step_undone(trainer);
  EXPECT_EQ(trainer.state().step, 2);
  EXPECT_EQ(CheckpointManager(dir / "checkpoints").latest().value(), CheckpointManager(dir / "checkpoints").path_of(2));
  EXPECT_EQ(test::read_jsonl(dir / "metrics.jsonl").size(), 2u);
}

TEST_F(NonFinite, TheSkipPolicyUndoesTheStepCountsItAndGoesOn) {
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 32), set, collator,
                  test::tiny_trainer_options(dir.path.string()).non_finite(NonFinitePolicy::Skip));
  poison_gradient_from_step(trainer, 3, 3);
  bool checked = false;
  trainer.add_callback(std::make_shared<test::OnStepEnd>([&](TrainerState& s) {
    if (s.step != 3) return;
    expect_step_undone(trainer);
    checked = true;
  }));
  trainer.train();
  EXPECT_TRUE(checked);
  EXPECT_EQ(trainer.state().step, 8);
  EXPECT_EQ(trainer.state().skipped_steps, 1);
  const auto lines = test::read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  for (const auto& line : lines) {
    const bool bad = line["step"] == 3;
    EXPECT_EQ(line["skipped"].get<bool>(), bad) << line.dump();
    EXPECT_EQ(line.contains("non_finite"), bad) << line.dump();
  }
  EXPECT_THAT(lines[2]["non_finite"].get<std::string>(), HasSubstr("gradient norm is inf"));
  // The count survives a checkpoint.
  Trainer resumed(attention_dual_encoder(2), StrategyOptions::contaccum(16, 4, 32), set, collator,
                  test::tiny_trainer_options(dir.path.string()).non_finite(NonFinitePolicy::Skip));
  ASSERT_TRUE(resumed.resume_latest());
  EXPECT_EQ(resumed.state().skipped_steps, 1);
}

TEST_F(NonFinite, TooManySkipsInARowStop) {
  Trainer trainer(
      model, StrategyOptions::contaccum(16, 4, 32), set, collator,
      test::tiny_trainer_options(dir.path.string()).non_finite(NonFinitePolicy::Skip).max_consecutive_skips(3));
  poison_gradient_from_step(trainer, 3, 100);
  EXPECT_THAT(test::error_of([&] { trainer.train(); }),
              ::testing::AllOf(HasSubstr("3 steps in a row (to step 5)"), HasSubstr("max_consecutive_skips = 3")));
  expect_same_weights(before, model);
}

TEST_F(NonFinite, ANaNInABankEntryIsCaughtInTheLoss) {
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 32), set, collator,
                  test::tiny_trainer_options(dir.path.string()));
  trainer.add_callback(std::make_shared<test::OnStepEnd>([&](TrainerState& s) {
    if (s.step != 2) return;
    remember(trainer);
    // view() shares the bank's storage.
    trainer.strategy().passage_bank().view()[5][0][3].fill_(std::nan(""));
    query_bank_before = trainer.strategy().query_bank().view().clone();
  }));
  EXPECT_THAT(test::error_of([&] { trainer.train(); }),
              ::testing::AllOf(HasSubstr("step 3 is not finite"), HasSubstr("the loss is NaN")));
  expect_same_weights(before, model);
  EXPECT_TRUE(torch::equal(optimizer_moments(trainer), moments_before));
}

// The case: a tiny temperature makes finite losses and gradients
// whose squares overflow float32 (AdamW's second moment would turn infinite).
// Without clipping the step is refused; with clipping it is applied, clipped.
TEST_F(NonFinite, ATinyTemperatureIsRefusedUnclippedAndAppliedClipped) {
  for (double clip : {0.0, 2.0}) {
    test::TempDir out;
    auto m = test::tiny_dual_encoder(1);
    const auto initial = weights_of(m);
    Trainer trainer(m, StrategyOptions::grad_accum(16, 4).loss(InfoNCEOptions().temperature(1e-30)), set, collator,
                    test::tiny_trainer_options(out.path.string()).max_grad_norm(clip));
    const auto error = test::error_of([&] { trainer.train(); });
    if (clip == 0.0) {
      EXPECT_THAT(error, ::testing::AllOf(HasSubstr("step 1 is not finite"), HasSubstr("its square overflows")));
      expect_same_weights(initial, m);
      EXPECT_FALSE(CheckpointManager(out / "checkpoints").latest().has_value());
    } else {
      EXPECT_EQ(error, "no error");
      EXPECT_EQ(first_non_finite(*m), "");
      EXPECT_EQ(first_non_finite(trainer.optimizer()), "");
      EXPECT_FALSE(torch::equal(initial.begin()->second, m->named_parameters()[initial.begin()->first]));
      for (const auto& line : test::read_jsonl(out / "metrics.jsonl")) EXPECT_GT(line["grad_norm"].get<double>(), 1e20);
    }
  }
}

TEST_F(NonFinite, ACheckpointWithANonFiniteTensorIsNeverWritten) {
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 32), set, collator,
                  test::tiny_trainer_options(dir.path.string()).max_steps(2).checkpoint_every(0));
  trainer.add_callback(std::make_shared<test::OnStepEnd>([&](TrainerState& s) {
    if (s.step == 2) {
      torch::NoGradGuard no_grad;
      model->query_encoder()->named_parameters().begin()->value()[0][0] = kInf;
    }
  }));
  EXPECT_THAT(test::error_of([&] { trainer.train(); }),
              ::testing::AllOf(HasSubstr("refusing to write a checkpoint at step 2"), HasSubstr("model parameter")));
  EXPECT_FALSE(CheckpointManager(dir / "checkpoints").latest().has_value());
}

}  // namespace
}  // namespace contaccum
