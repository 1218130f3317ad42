#pragma once

// What this CPU's instruction set offers, asked once: the one home of the
// checks the library's vector kernels (the short products, FusedAdamW's
// loop, the bag pooling) make before calling their AVX2 or AVX-512 clones.
// Those kernels give the same bits whichever clone runs; this says which.

namespace contaccum {

/// Instruction-set extensions of the CPU this process runs on.
struct CpuFeatures {
  /// AVX2 (256-bit integer and float vectors).
  bool avx2 = false;
  /// FMA3 (fused multiply-add).
  bool fma = false;
  /// AVX-512 Foundation.
  bool avx512f = false;
};

/// This CPU's features (all false off x86), asked once per process.
const CpuFeatures& cpu_features();

}  // namespace contaccum
