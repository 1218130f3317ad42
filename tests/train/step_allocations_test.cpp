// A steady-state training step allocates no large temporary: gradients are
// kept between steps, the optimizer updates in place, the embedding table's
// and the projection's gradients are added into `.grad` directly, the banks
// keep unit rows for the cosine loss (no normalised copies), the loss works
// in tiles. Counted with AllocationCounter.
#include <contaccum/contaccum.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "train/train_fixture.h"

namespace contaccum {
namespace {

constexpr int64_t kStepVocab = 2000;
// Below every parameter-sized tensor of the model (its 2000 x 512 table is
// 4 MiB, its 512 x 512 projection 1 MiB) and every bank (64 examples of 3
// passages of 512: 384 KiB), and above every activation of these
// micro-batches (8 examples of 3 passages of 12 tokens; a [tokens, 512]
// per-token embedding gradient, which LibTorch's sparse backward would
// make, would be 576 KiB).
constexpr int64_t kLarge = 256 << 10;

struct StepCase {
  const char* name;
  StrategyOptions strategy;
};

void PrintTo(const StepCase& c, std::ostream* out) { *out << c.name; }

std::vector<StepCase> cases() {
  const auto cosine = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.1);
  return {{"full_batch", StrategyOptions::full_batch(32).loss(cosine)},
          {"grad_accum", StrategyOptions::grad_accum(32, 8).loss(cosine)},
          {"grad_cache", StrategyOptions::grad_cache(32, 8).loss(cosine)},
          {"contaccum", StrategyOptions::contaccum(32, 8, 64).loss(cosine)},
          {"contaccum_dot", StrategyOptions::contaccum(32, 8, 64)},
          {"contaccum_grad_cache", StrategyOptions::contaccum_grad_cache(32, 8, 64).loss(cosine)}};
}

class StepAllocations : public ::testing::TestWithParam<StepCase> {};

TEST_P(StepAllocations, SteadyStateStepsAllocateNothingLarge) {
  auto set = test::tiny_training_set(256);
  Collator collator(test::hashing_tokenizer(kStepVocab));
  torch::manual_seed(4);
  auto tower = BagOfEmbeddingsEncoder(
      BagOfEmbeddingsEncoderOptions(kStepVocab, 512).embedding_dim(512).dropout(0.1).pooling(BagPooling::Attention));
  DualEncoder model(tower.ptr(), DualEncoderOptions().similarity(GetParam().strategy.loss().similarity()));
  Trainer trainer(model, GetParam().strategy, set, collator,
                  TrainerOptions()
                      .optimizer(AdamWSetup().lr(1e-3))
                      .max_steps(6)
                      .hard_negatives(2)
                      .max_grad_norm(1e-3)  // every step clips
                      .seed(3)
                      .progress(ProgressMode::Silent));
  std::vector<AllocationCounts> per_step;
  AllocationCounter counter(kLarge);
  trainer.add_callback(std::make_shared<test::OnStepEnd>([&](TrainerState&) {
    per_step.push_back(counter.counts());
    counter.reset();
  }));
  trainer.train();
  ASSERT_EQ(per_step.size(), 6u);
  // Step 1 creates the gradients and the optimizer's moments (table-sized).
  EXPECT_GE(per_step[0].large_allocations, 3);
  for (size_t s = 2; s < per_step.size(); ++s) {
    EXPECT_EQ(per_step[s].large_allocations, 0) << "step " << s + 1 << " allocated " << per_step[s].large_allocations
                                                << " tensors of >= 256 KiB (" << per_step[s].large_bytes << " B)";
    EXPECT_GT(per_step[s].allocations, 0) << "the counter saw nothing: is it still connected?";
  }
}

// The same count, as users see it: metrics.jsonl's `allocations` objects.
TEST(StepAllocations, MetricsCarryTheCounts) {
  auto set = test::tiny_training_set(64);
  Collator collator(test::hashing_tokenizer(kStepVocab));
  torch::manual_seed(4);
  auto tower = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(kStepVocab, 64).embedding_dim(512));
  test::TempDir dir;
  Trainer trainer(DualEncoder(tower.ptr()), StrategyOptions::contaccum(16, 8, 32), set, collator,
                  TrainerOptions()
                      .max_steps(4)
                      .hard_negatives(1)
                      .output_dir(dir.path.string())
                      .checkpoint_every(0)
                      .count_allocations(true)
                      .progress(ProgressMode::Silent));
  trainer.train();
  const auto lines = test::read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  // Step 1 makes the table's gradient and the two moments: 4 MiB each.
  EXPECT_GE(lines[0]["allocations"]["large_count"].get<int64_t>(), 3);
  EXPECT_GE(lines[0]["allocations"]["large_bytes"].get<int64_t>(), 3 * kStepVocab * 512 * 4);
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto& a = lines[i]["allocations"];
    EXPECT_EQ(a["large_count"].get<int64_t>(), 0) << "step " << i + 1;
    EXPECT_GT(a["count"].get<int64_t>(), 0);
    EXPECT_GT(a["peak_bytes"].get<int64_t>(), 0);
    EXPECT_LE(a["peak_bytes"].get<int64_t>(), a["bytes"].get<int64_t>());
  }
}

INSTANTIATE_TEST_SUITE_P(EveryStrategy, StepAllocations, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<StepCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contaccum
