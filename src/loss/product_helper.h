#pragma once

// Internal: the threads that share one short product (short_products.cpp).

#include "contaccum/loss/short_products.h"

#include <cstdint>
#include <functional>

namespace contaccum::detail {

/// How many threads share a product: as many as the BLAS it replaces would
/// use (OpenBLAS's pool, which `set_compute_threads` sets; LibTorch's own
/// count where the BLAS is another), at most two: the caller and the helper.
int product_threads();

/// Runs `work(c)` for every `c` in `[0, chunks)`: on the calling thread and
/// the helper when `product_threads()` is 2 and no other thread is using the
/// helper, else on the calling thread alone. Each chunk must be a fixed set
/// of outputs, so which thread takes it changes no bit.
void share_out(int64_t chunks, const std::function<void(int64_t)>& work);

/// The helper's counters (`short_product_helper_stats`).
ShortProductHelperStats helper_stats();

}  // namespace contaccum::detail
