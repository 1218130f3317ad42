#include "contaccum/core/allocation_counter.h"

#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "contaccum/core/torch_compat.h"

namespace contaccum {

struct AllocationCounter::Reporter final : c10::MemoryReportingInfoBase {
  explicit Reporter(int64_t threshold) : threshold(threshold) {}

  void reportMemoryUsage(void* /*ptr*/, int64_t size, detail::MemoryReportTotal /*total_allocated*/,
                         detail::MemoryReportTotal /*total_reserved*/, c10::Device device) override {
    if (!device.is_cpu()) return;
    const std::lock_guard<std::mutex> lock(mutex);
    live += size;
    if (size > 0) {
      counts.allocations += 1;
      counts.bytes += size;
      if (size >= threshold) {
        counts.large_allocations += 1;
        counts.large_bytes += size;
      }
    }
    counts.peak_bytes = std::max(counts.peak_bytes, live - base);
  }
  bool memoryProfilingEnabled() const override { return true; }

  const int64_t threshold;
  mutable std::mutex mutex;  // backward may report from another thread
  AllocationCounts counts;
  int64_t live = 0;  // bytes held by tensors allocated since construction
  int64_t base = 0;  // `live` at the last reset
};

struct AllocationCounter::Guard {
  explicit Guard(std::shared_ptr<c10::DebugInfoBase> info)
      : guard(c10::DebugInfoKind::PROFILER_STATE, std::move(info)) {}
  c10::DebugInfoGuard guard;
};

AllocationCounter::AllocationCounter(int64_t large_bytes) {
  TORCH_CHECK(large_bytes >= 0, "AllocationCounter: large_bytes must be >= 0, got ", large_bytes);
  reporter_ = std::make_shared<Reporter>(large_bytes);
  guard_ = std::make_unique<Guard>(reporter_);
}

AllocationCounter::~AllocationCounter() = default;

AllocationCounts AllocationCounter::counts() const {
  const std::lock_guard<std::mutex> lock(reporter_->mutex);
  return reporter_->counts;
}

void AllocationCounter::reset() {
  const std::lock_guard<std::mutex> lock(reporter_->mutex);
  reporter_->counts = {};
  reporter_->base = reporter_->live;
}

}  // namespace contaccum
