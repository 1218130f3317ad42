#pragma once

#include <cstdint>
#include <memory>

namespace contaccum {

/// What an `AllocationCounter` saw.
struct AllocationCounts {
  int64_t allocations = 0;        ///< CPU tensor allocations of any size
  int64_t bytes = 0;              ///< their bytes
  int64_t large_allocations = 0;  ///< those of at least the threshold
  int64_t large_bytes = 0;        ///< their bytes
  /// Most bytes held at once by the tensors allocated while counting (since
  /// construction or the last `reset`); tensors allocated before do not
  /// count, nor does freeing them.
  int64_t peak_bytes = 0;
};

/// Counts the CPU tensor memory LibTorch allocates while it is alive: every
/// allocation of LibTorch's CPU allocator on this thread, and in the
/// backward passes it starts (LibTorch carries the counter there), is
/// reported to it. Used by the tests and benchmarks that hold training
/// steps to their memory budget: how many large temporaries a steady-state
/// step allocates, and the peak of a loss's working memory.
///
/// One counter per thread at a time; it replaces LibTorch's profiler memory
/// reporting (`torch::autograd::profiler` with `profile_memory`) while alive.
class AllocationCounter {
 public:
  /// `large_bytes`: allocations of at least this size are counted apart.
  /// Must be >= 0. Default: 1 MiB.
  explicit AllocationCounter(int64_t large_bytes = int64_t{1} << 20);
  ~AllocationCounter();
  AllocationCounter(const AllocationCounter&) = delete;
  AllocationCounter& operator=(const AllocationCounter&) = delete;

  /// What was counted since construction or the last `reset`.
  AllocationCounts counts() const;
  /// Starts counting afresh (the peak from the bytes held now).
  void reset();

 private:
  struct Reporter;
  std::shared_ptr<Reporter> reporter_;
  struct Guard;
  std::unique_ptr<Guard> guard_;
};

}  // namespace contaccum
