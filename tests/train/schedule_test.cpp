#include <contaccum/train/schedule.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace contaccum {
namespace {

TEST(LinearSchedule, WarmupThenLinearDecayAsHuggingFace) {
  // HF: lambda(s) = s / warmup for s < warmup, else (total - s) / (total - warmup).
  LinearSchedule s(LinearScheduleOptions(1.0, 6).warmup_steps(2));
  const double expected[] = {0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0};
  for (int i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(s.lr(i), expected[i]) << "step " << i;
}

TEST(LinearSchedule, NoWarmupStartsAtPeak) {
  LinearSchedule s(LinearScheduleOptions(3e-4, 4));
  EXPECT_DOUBLE_EQ(s.lr(0), 3e-4);
  EXPECT_DOUBLE_EQ(s.lr(1), 3e-4 * 0.75);
  EXPECT_DOUBLE_EQ(s.lr(3), 3e-4 * 0.25);
  EXPECT_DOUBLE_EQ(s.lr(4), 0.0);
}

TEST(LinearSchedule, WarmupLongerThanRunNeverDecays) {
  LinearSchedule s(LinearScheduleOptions(1.0, 3).warmup_steps(10));
  EXPECT_DOUBLE_EQ(s.lr(2), 0.2);
}

TEST(LinearSchedule, AFinalRatioEndsTheDecayThereAndZeroIsHuggingFacesBitForBit) {
  // Closed form: peak * (r + (1 - r) * (total - s) / (total - warmup)).
  LinearSchedule s(LinearScheduleOptions(0.01, 10).warmup_steps(2).final_lr_ratio(0.25));
  EXPECT_DOUBLE_EQ(s.lr(1), 0.005);
  EXPECT_DOUBLE_EQ(s.lr(2), 0.01);
  EXPECT_DOUBLE_EQ(s.lr(6), 0.01 * (0.25 + 0.75 * 0.5));
  EXPECT_DOUBLE_EQ(s.lr(10), 0.0025);
  EXPECT_DOUBLE_EQ(s.lr(12), 0.0025);
  LinearSchedule explicit_zero(LinearScheduleOptions(3e-3, 977).warmup_steps(13).final_lr_ratio(0.0));
  for (int64_t step = 0; step <= 980; ++step) {
    const double want = step < 13 ? 3e-3 * step / 13.0 : 3e-3 * std::max(0.0, (977.0 - step) / 964.0);
    ASSERT_EQ(explicit_zero.lr(step), want) << "step " << step;
  }
}

TEST(LinearSchedule, RejectsBadOptions) {
  using ::testing::HasSubstr;
  EXPECT_THAT([] { LinearSchedule(LinearScheduleOptions(0.0, 5)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("peak_lr must be > 0, got 0")));
  EXPECT_THAT([] { LinearSchedule(LinearScheduleOptions(1.0, 0)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("total_steps must be > 0, got 0")));
  EXPECT_THAT([] { LinearSchedule(LinearScheduleOptions(1.0, 5).warmup_steps(-1)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("warmup_steps must be >= 0, got -1")));
  EXPECT_THAT([] { LinearSchedule(LinearScheduleOptions(1.0, 5).final_lr_ratio(1.5)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("final_lr_ratio must be in [0, 1], got 1.5")));
}

}  // namespace
}  // namespace contaccum
