// Bad options fail at construction with the option and its value named.
#include "test_util.h"

namespace contaccum {
namespace {

std::string error_of(const StrategyOptions& options) {
  try {
    Strategy(test::make_model(0.0), options);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

TEST(StrategyOptions, RejectsInconsistentSettingsNamingOptionAndValue) {
  EXPECT_THAT(error_of(StrategyOptions::grad_accum(12, 5)),
              ::testing::HasSubstr("micro_batch (5) must divide total_batch (12)"));
  EXPECT_THAT(error_of(StrategyOptions::grad_accum(8, 16)),
              ::testing::HasSubstr("micro_batch (16) must be <= total_batch (8)"));
  EXPECT_THAT(error_of(StrategyOptions::grad_accum(0, 1)), ::testing::HasSubstr("total_batch must be > 0, got 0"));
  EXPECT_THAT(error_of(StrategyOptions::grad_accum(8, 0)), ::testing::HasSubstr("micro_batch must be > 0, got 0"));
  EXPECT_THAT(error_of(StrategyOptions::contaccum(8, 2, -3)), ::testing::HasSubstr("memory_size must be >= 0, got -3"));
  EXPECT_THAT(error_of(StrategyOptions::grad_accum(8, 2).loss(InfoNCEOptions().temperature(-0.5))),
              ::testing::HasSubstr("temperature must be > 0, got -0.5"));
  EXPECT_THAT(error_of(StrategyOptions::contaccum(8, 2, 4).query_bank(false).passage_bank(false)),
              ::testing::HasSubstr("memory_size = 4 needs query_bank or passage_bank"));
  EXPECT_EQ(error_of(StrategyOptions::contaccum(8, 2, 4)), "no error");
}

TEST(StrategyOptions, PresetsAreTheDocumentedCombinations) {
  const auto fb = StrategyOptions::full_batch(32);
  EXPECT_EQ(fb.micro_batch(), 32);
  EXPECT_EQ(fb.negatives(), NegativeScope::TotalBatch);
  EXPECT_EQ(fb.gradients(), GradientMode::Direct);
  const auto gc = StrategyOptions::contaccum_grad_cache(32, 8, 64);
  EXPECT_EQ(gc.gradients(), GradientMode::Cached);
  EXPECT_EQ(gc.negatives(), NegativeScope::TotalBatch);
  EXPECT_EQ(gc.memory_size(), 64);
  const auto ca = StrategyOptions::contaccum(32, 8, 64);
  EXPECT_EQ(ca.negatives(), NegativeScope::MicroBatch);
  EXPECT_TRUE(ca.query_bank() && ca.passage_bank() && ca.bank_hard_negatives() && !ca.clear_banks_after_step());
}

TEST(Strategy, RejectsBatchesOfTheWrongShape) {
  Strategy strategy(test::make_model(0.0), StrategyOptions::grad_accum(4, 2));
  auto batch = test::random_batch(4, 1);
  batch.hard_negatives = 2;
  EXPECT_THAT([&] { strategy.compute_gradients(batch); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("need 12 passages, got 8")));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

bool same(const StrategyOptions& a, const StrategyOptions& b) {
  return a.total_batch() == b.total_batch() && a.micro_batch() == b.micro_batch() && a.gradients() == b.gradients() &&
         a.negatives() == b.negatives() && a.memory_size() == b.memory_size();
}

// The one name -> options mapping agrees with the named presets; memory is
// kept only by the bank presets.
TEST(StrategyOptions, FromPresetIsTheNamedPreset) {
  EXPECT_TRUE(same(StrategyOptions::from_preset("full_batch", 32, 8, 64), StrategyOptions::full_batch(32)));
  EXPECT_TRUE(same(StrategyOptions::from_preset("grad_accum", 32, 8, 64), StrategyOptions::grad_accum(32, 8)));
  EXPECT_TRUE(same(StrategyOptions::from_preset("grad_cache", 32, 8, 64), StrategyOptions::grad_cache(32, 8)));
  EXPECT_TRUE(same(StrategyOptions::from_preset("contaccum", 32, 8, 64), StrategyOptions::contaccum(32, 8, 64)));
  EXPECT_TRUE(same(StrategyOptions::from_preset("contaccum_grad_cache", 32, 8, 64),
                   StrategyOptions::contaccum_grad_cache(32, 8, 64)));
  EXPECT_EQ(StrategyOptions::preset_names().size(), 5u);
  for (const auto& name : StrategyOptions::preset_names()) {
    EXPECT_EQ(StrategyOptions::preset_has_banks(name), StrategyOptions::from_preset(name, 32, 8, 64).memory_size() > 0)
        << name;
  }
  EXPECT_THAT(test::error_of([] { StrategyOptions::from_preset("moco", 8, 2); }),
              ::testing::HasSubstr("must be one of full_batch, grad_accum, grad_cache, contaccum, "
                                   "contaccum_grad_cache; got 'moco'"));
}

}  // namespace
}  // namespace contaccum
