#include "test_util.h"

namespace contaccum {
namespace {

TEST(TrainingBatch, SliceKeepsEachExamplesPassagesTogether) {
  auto b = test::random_batch(5, 2);
  b.passages.input_ids = torch::arange(15).view({15, 1});
  b.passages.attention_mask = torch::ones({15, 1}, torch::kLong);
  const auto s = b.slice(1, 3);
  EXPECT_EQ(s.size(), 2);
  EXPECT_TRUE(torch::equal(s.passages.input_ids.flatten(), torch::arange(3, 9)));
  b.hard_negatives = 1;
  EXPECT_THAT([&] { b.size(); }, ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr(
                                     "5 queries with hard_negatives = 1 need 10 passages, got 15")));
}

}  // namespace
}  // namespace contaccum
