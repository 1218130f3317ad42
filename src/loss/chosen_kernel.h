#pragma once

// Internal to src/loss/: which of a kernel's per-instruction-set builds to
// call, for the short products and the tile kernels alike.

#include "contaccum/loss/short_products.h"

namespace contaccum::detail {

/// The build of `short_product_isa()` among three of one kernel (built
/// without the x86 files, their names forward to the portable kernel and are
/// never chosen).
template <typename Kernel>
Kernel chosen_kernel(Kernel avx512, Kernel avx2, Kernel portable) {
  switch (short_product_isa()) {
    case ShortProductIsa::Avx512:
      return avx512;
    case ShortProductIsa::Avx2:
      return avx2;
    default:
      return portable;
  }
}

}  // namespace contaccum::detail
