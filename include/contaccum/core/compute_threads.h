#pragma once

namespace contaccum {

/// Sets the threads a process computes with: LibTorch's intra-op threads and,
/// when the BLAS that LibTorch calls is OpenBLAS, OpenBLAS's own pool.
///
/// `torch::set_num_threads` alone does not bound OpenBLAS (Debian's LibTorch
/// hands its matrix products to the system BLAS), which otherwise keeps one
/// thread per core in every process; with several runs or data-parallel
/// workers on one machine those threads spin against each other. Every
/// place that honours a `threads` setting calls this instead. Must be > 0.
void set_compute_threads(int threads);

/// OpenBLAS's thread count, or -1 when the BLAS in use is not OpenBLAS (its
/// threads are then not known to this library).
int blas_threads();

}  // namespace contaccum
