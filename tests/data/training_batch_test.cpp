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

// FNV-1a as its definition states it, byte by byte over each attended token
// id's eight bytes (lowest first), top bit cleared: the oracle for the
// identities hashed from tokens.
int64_t fnv1a_of_row(const torch::Tensor& ids, const torch::Tensor& mask) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t t = 0; t < ids.size(0); ++t) {
    if (mask[t].item<int64_t>() == 0) continue;
    const auto v = static_cast<uint64_t>(ids[t].item<int64_t>());
    for (int byte = 0; byte < 8; ++byte) {
      h ^= (v >> (8 * byte)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return static_cast<int64_t>(h & 0x7fffffffffffffffULL);
}

// Row counts around the four rows hashed at once, random ids (negative and
// past 2^32 too) and random masks; the positives derived from the
// identities given are those derived from the batch alone.
TEST(TrainingBatch, PassageIdentitiesAreEachRowsFnv1aOfItsAttendedTokens) {
  torch::manual_seed(71);
  for (const int64_t examples : {1, 3, 4, 5, 9}) {
    for (const int64_t hard : {0, 2}) {
      auto b = test::random_batch(examples, hard);
      b.passage_ids = torch::Tensor();
      const int64_t rows = examples * (1 + hard), length = 13;
      b.passages.input_ids = torch::randint(-(int64_t{1} << 40), int64_t{1} << 40, {rows, length}, torch::kLong);
      b.passages.attention_mask = torch::randint(0, 2, {rows, length}, torch::kLong);
      const auto got = b.passage_identities();
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{examples, 1 + hard}));
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(got.view({-1})[r].item<int64_t>(),
                  fnv1a_of_row(b.passages.input_ids[r], b.passages.attention_mask[r]))
            << examples << " examples, row " << r;
      }
      EXPECT_TRUE(torch::equal(b.positive_identities(got), got.narrow(1, 0, 1)));
      EXPECT_TRUE(torch::equal(b.positive_identities(), got.narrow(1, 0, 1)));
      EXPECT_THAT(test::error_of([&] { b.positive_identities(got.flatten()); }),
                  ::testing::HasSubstr("passage_identities must be [" + std::to_string(examples) + ", " +
                                       std::to_string(1 + hard) + "], got [" + std::to_string(rows) + "]"));
      b.positive_ids = torch::full({examples, 2}, 7, torch::kLong);
      EXPECT_TRUE(torch::equal(b.positive_identities(got), b.positive_ids)) << "given positives win";
    }
  }
}

}  // namespace
}  // namespace contaccum
