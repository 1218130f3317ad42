#pragma once

// The library's one helper thread: a second core for its own kernels (the
// loss's short products, the bag-of-embeddings pooling, FusedAdamW, the
// gradients' zeroing and norm), beside OpenBLAS's pool rather than in
// LibTorch's intra-op pool.

#include <cstdint>
#include <functional>

namespace contaccum {

/// How many threads `share_out` uses: as many as the BLAS would (OpenBLAS's
/// pool, which `set_compute_threads` sets; LibTorch's intra-op count where
/// the BLAS is another), at most two: the caller and the helper.
///
/// Why not LibTorch's intra-op pool: LibTorch sizes it from its count of
/// physical cores, which is 1 on the 2-vCPU virtual machines this library
/// is measured on, and with two threads its OpenMP workers spin on the core
/// where OpenBLAS's worker and this helper already poll (bench/banks: whole
/// steps 6-20% slower with `OMP_NUM_THREADS=2` there).
int helper_threads();

/// Runs `work(c)` for every `c` in `[0, chunks)`: on the calling thread and
/// the helper when `helper_threads()` is 2 and no other thread is using the
/// helper, else on the calling thread alone. Each chunk must be a fixed set
/// of outputs, so which thread takes it changes no bit. When a chunk throws,
/// the chunks not yet handed out are skipped and the first error is rethrown
/// on the caller once both threads have stopped. A `share_out` inside a chunk runs on its
/// thread alone.
void share_out(int64_t chunks, const std::function<void(int64_t)>& work);

/// `work(begin, end)` for the ranges `[0, grain)`, `[grain, 2 grain)`, ...
/// of `[0, n)` (the last one shorter), shared out as `share_out` does.
/// `grain` must be > 0.
void share_out_ranges(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& work);

/// What the helper has done so far, for benchmarks and tests.
struct HelperThreadStats {
  /// The helper's Linux thread id; 0 before it has started (or off Linux).
  int64_t thread_id = 0;
  /// Calls of `share_out` offered to the helper (run with two threads).
  int64_t calls = 0;
  /// Chunks those calls were cut into, and those of them the helper
  /// computed (the caller took the rest): about half with two free cores.
  int64_t pieces = 0, helper_pieces = 0;
  /// Times a caller found the helper on its own core and confined the
  /// helper to the other cores it may use.
  int64_t moves = 0;
};

/// The helper's counters (starts the helper when it has not started).
HelperThreadStats helper_thread_stats();

}  // namespace contaccum
