#include "test_util.h"

#include <contaccum/core/encoder_input.h>

namespace contaccum {
namespace {

TEST(EncoderInput, SliceCutsEveryTensorIncludingExtras) {
  EncoderInput in;
  in.input_ids = torch::arange(12).view({4, 3});
  in.attention_mask = torch::ones({4, 3}, torch::kLong);
  in.extras["token_type_ids"] = torch::arange(4).view({4, 1});
  const auto s = in.slice(1, 3);
  EXPECT_EQ(s.size(), 2);
  EXPECT_TRUE(torch::equal(s.input_ids, in.input_ids.slice(0, 1, 3)));
  EXPECT_TRUE(torch::equal(s.extras.at("token_type_ids"), torch::tensor({{1}, {2}})));
  EXPECT_EQ(s.input_ids.data_ptr(), in.input_ids[1].data_ptr()) << "slice must be a view";
}

TEST(EncoderInput, DisagreeingRowCountsAreRejected) {
  EncoderInput in;
  in.input_ids = torch::zeros({4, 3}, torch::kLong);
  in.extras["features"] = torch::zeros({5, 2});
  EXPECT_THAT([&] { in.size(); }, ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr(
                                      "extras[\"features\"] has 5 rows, but the other inputs have 4")));
  EXPECT_THAT([&] { EncoderInput{}.size(); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("holds no tensor")));
  in.extras.clear();
  EXPECT_THAT([&] { in.slice(2, 7); }, ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("[2, 7)")));
}

}  // namespace
}  // namespace contaccum
