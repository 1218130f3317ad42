#include <contaccum/core/allocation_counter.h>
#include <contaccum/core/allocator.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <cstdlib>

#include "test_util.h"

namespace contaccum {
namespace {

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Allocates, writes and frees 64 MiB blocks, as a training step does with its
// temporaries; returns the page faults that cost.
long churn_faults() {
  constexpr size_t kBytes = size_t{64} << 20;
  const long before = minor_faults();
  for (int i = 0; i < 6; ++i) {
    auto* block = static_cast<volatile char*>(std::malloc(kBytes));
    for (size_t at = 0; at < kBytes; at += 4096) block[at] = static_cast<char>(at);
    std::free(const_cast<char*>(block));
  }
  return minor_faults() - before;
}

// Each test runs in its own process (gtest_discover_tests), so the first
// measurement sees glibc's defaults: a 64 MiB block is above the largest
// mmap threshold glibc picks by itself (32 MiB) and is mapped afresh every
// time. Once configured, the heap keeps it and the faults disappear.
TEST(ConfigureAllocator, FreedMemoryIsReusedWithoutPageFaults) {
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES",
                           "CONTACCUM_ALLOCATOR", "LD_PRELOAD"}) {
    if (std::getenv(name) != nullptr) GTEST_SKIP() << name << " is set: the allocator is the environment's";
  }
  const long with_defaults = churn_faults();
  const auto report = configure_allocator();
  if (report.description.find("another malloc") != std::string::npos) {
    GTEST_SKIP() << report.description << " (a sanitizer's, or a preloaded one)";
  }
  ASSERT_TRUE(report.changed) << report.description;
  churn_faults();  // the heap grows once
  const long configured = churn_faults();
  EXPECT_GT(with_defaults, 6 * 16384 / 2) << "glibc's defaults no longer map large blocks afresh?";
  EXPECT_LT(configured * 50, with_defaults)
      << "faults with defaults " << with_defaults << ", configured " << configured;
}

TEST(ConfigureAllocator, LeavesAnEnvironmentsChoiceAlone) {
  ::setenv("CONTACCUM_ALLOCATOR", "system", 1);
  const auto report = configure_allocator();
  ::unsetenv("CONTACCUM_ALLOCATOR");
  EXPECT_FALSE(report.changed);
  EXPECT_THAT(report.description, ::testing::HasSubstr("CONTACCUM_ALLOCATOR=system"));
  ::setenv("MALLOC_TRIM_THRESHOLD_", "1000", 1);
  const auto by_glibc = configure_allocator();
  ::unsetenv("MALLOC_TRIM_THRESHOLD_");
  EXPECT_FALSE(by_glibc.changed);
  EXPECT_THAT(by_glibc.description, ::testing::HasSubstr("MALLOC_TRIM_THRESHOLD_"));
}

TEST(AllocationCounter, CountsLargeAndSmallAllocationsAndThePeak) {
  AllocationCounter counter(1 << 20);
  {
    auto big = torch::empty({1 << 19}, torch::kFloat);     // 2 MiB
    auto small = torch::empty({100}, torch::kFloat);       // 400 B
    auto bigger = torch::empty({1 << 20}, torch::kFloat);  // 4 MiB, while big is held
  }
  auto after = torch::empty({1 << 19}, torch::kFloat);  // 2 MiB, the others freed
  const auto counts = counter.counts();
  EXPECT_EQ(counts.allocations, 4);
  EXPECT_EQ(counts.bytes, (2 << 20) + 400 + (4 << 20) + (2 << 20));
  EXPECT_EQ(counts.large_allocations, 3);
  EXPECT_EQ(counts.large_bytes, (2 << 20) + (4 << 20) + (2 << 20));
  EXPECT_EQ(counts.peak_bytes, (2 << 20) + 400 + (4 << 20));
  counter.reset();
  EXPECT_EQ(counter.counts().allocations, 0);
  EXPECT_EQ(counter.counts().peak_bytes, 0);
  auto again = torch::empty({1 << 18}, torch::kFloat);  // 1 MiB: at the threshold
  EXPECT_EQ(counter.counts().large_allocations, 1);
  EXPECT_EQ(counter.counts().peak_bytes, 1 << 20);
}

TEST(AllocationCounter, SeesTheBackwardPass) {
  auto x = torch::randn({512, 1024}, torch::requires_grad());  // 2 MiB
  AllocationCounter counter(1 << 20);
  auto loss = (x * 3).sum();
  EXPECT_EQ(counter.counts().large_allocations, 1);  // x * 3
  loss.backward();
  // The product's gradient (which becomes x.grad): made by the backward pass.
  EXPECT_GE(counter.counts().large_allocations, 2);
  EXPECT_EQ(counter.counts().large_bytes % (2 << 20), 0);
}

TEST(AllocationCounter, RefusesANegativeThreshold) {
  EXPECT_THAT(test::error_of([] { AllocationCounter counter(-1); }),
              ::testing::HasSubstr("large_bytes must be >= 0, got -1"));
}

}  // namespace
}  // namespace contaccum
