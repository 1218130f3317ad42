#pragma once

#include <cstddef>
#include <string>

namespace contaccum {

/// Options of `configure_allocator`.
struct AllocatorSettings {
  /// Allocations of at least this many bytes are mapped from the kernel on
  /// their own and unmapped when freed (glibc's `M_MMAP_THRESHOLD`). At most
  /// 2 GiB - 1 (`mallopt` takes an int; larger values are lowered to it).
  /// Default: 2 GiB - 1, so that every tensor of a training step comes from,
  /// and returns to, the heap.
  size_t mmap_threshold = (size_t{1} << 31) - 1;
  /// Free memory at the top of the heap beyond this many bytes is given back
  /// to the kernel (`M_TRIM_THRESHOLD`). At most 2 GiB - 1. Default: 2 GiB - 1.
  size_t trim_threshold = (size_t{1} << 31) - 1;
};

/// What `configure_allocator` did, in one line for a log.
struct AllocatorReport {
  bool changed = false;
  std::string description;
};

/// Sets glibc's malloc up for training: freed memory is kept in the process
/// and reused, instead of being unmapped and mapped again (and zeroed by the
/// kernel, one page fault per 4 KiB) on every step. A training step frees
/// and allocates the same tens of megabytes of temporaries (activations,
/// gradients, the loss's score matrices) each time; with glibc's defaults,
/// blocks above its mmap threshold (128 KiB, rising with use to at most
/// 32 MiB) are returned to the kernel when freed, which on virtual machines
/// made page faults, not arithmetic, most of a step's time (docs/BENCHMARKS.md:
/// the allocator section). The cost: the process keeps its peak heap as
/// resident memory until it exits.
///
/// Call it first thing in `main`, before tensors are allocated; the
/// `contaccum` command line does. It changes nothing, and says so, when
/// the environment already sets glibc's malloc (`MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_` or `glibc.malloc` tunables in
/// `GLIBC_TUNABLES`), when `CONTACCUM_ALLOCATOR=system` asks for the
/// defaults, when another malloc (jemalloc, tcmalloc) is preloaded, or on a
/// C library other than glibc.
AllocatorReport configure_allocator(const AllocatorSettings& settings = {});

}  // namespace contaccum
