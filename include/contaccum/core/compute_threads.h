#pragma once

namespace contaccum {

/// Sets the threads a process computes with: LibTorch's intra-op threads and,
/// when the BLAS that LibTorch calls is OpenBLAS, OpenBLAS's own pool.
///
/// `torch::set_num_threads` alone does not bound OpenBLAS (Debian's LibTorch
/// hands its matrix products to the system BLAS), which otherwise keeps one
/// thread per core in every process; with several runs or data-parallel
/// workers on one machine those threads spin against each other. Every
/// place that honours a `threads` setting calls this instead. Must be in
/// [1, `max_parallelism()`].
void set_compute_threads(int threads);

/// The most threads (or local worker processes) a request may ask for:
/// 4 x the cores this process may run on, and at most 1,024. More only
/// oversubscribes the machine (a request of 100,000 threads or 500 workers is
/// a typo, not a plan), so `set_compute_threads`, the launcher and the CLI
/// refuse it, naming the value and the core count.
int max_parallelism();
/// The cores this process may run on (its CPU affinity).
int available_cores();

/// OpenBLAS's thread count, or -1 when the BLAS in use is not OpenBLAS (its
/// threads are then not known to this library).
int blas_threads();

}  // namespace contaccum
