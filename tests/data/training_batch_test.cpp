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

// The passages' identities hash each row's attended tokens: a mask of
// another shape than the ids is refused, not read past its end.
TEST(TrainingBatch, PassageIdentitiesRefuseAMaskOfAnotherShape) {
  auto b = test::random_batch(3, 0);
  b.passage_ids = torch::Tensor();
  b.passages.attention_mask = b.passages.attention_mask.narrow(1, 0, b.passages.attention_mask.size(1) - 1);
  EXPECT_THAT(test::error_of([&] { b.passage_identities(); }),
              ::testing::HasSubstr("attention_mask [3, " + std::to_string(b.passages.input_ids.size(1) - 1) +
                                   "] must have the shape of input_ids"));
}

}  // namespace
}  // namespace contaccum
