#include "sparse_rows.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstring>

namespace contaccum::detail {
namespace {

bool any_bit(const unsigned char* bytes, int64_t n) {
  uint64_t seen = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, bytes + i, 8);
    seen |= word;
  }
  for (; i < n; ++i) seen |= bytes[i];
  return seen != 0;
}

}  // namespace

bool sparse_rows_candidate(const torch::Tensor& tensor) {
  return tensor.defined() && tensor.device().is_cpu() && tensor.layout() == torch::kStrided && tensor.is_contiguous() &&
         tensor.dim() >= 2 && tensor.size(0) >= kSparseRowsMin && tensor.numel() > 0;
}

void flag_nonzero_rows(const torch::Tensor& tensor, float* flags) {
  TORCH_CHECK(sparse_rows_candidate(tensor), "flag_nonzero_rows: need a contiguous CPU tensor of 2 or more ",
              "dimensions and at least ", kSparseRowsMin, " rows, got ", tensor.sizes(), " on ", tensor.device());
  const int64_t rows = tensor.size(0);
  const int64_t row_bytes = tensor.numel() / rows * static_cast<int64_t>(tensor.element_size());
  const auto* base = static_cast<const unsigned char*>(tensor.data_ptr());
  at::parallel_for(0, rows, /*grain_size=*/256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) flags[r] = any_bit(base + r * row_bytes, row_bytes) ? 1.0f : 0.0f;
  });
}

}  // namespace contaccum::detail
