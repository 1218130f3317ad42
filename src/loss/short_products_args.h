#pragma once

// What the short products' kernels (one per instruction set) take: plain
// pointers and sizes, so that their files need no LibTorch header.

#include <cstdint>

namespace contaccum::detail {

/// out[i * out_stride_x + j * out_stride_y] = x row i . y row j for every x
/// row i < x_rows and y rows j in [y_begin, y_end); rows of d floats.
struct RowDotsArgs {
  const float* x = nullptr;
  int64_t x_stride = 0, x_rows = 0;
  const float* y = nullptr;
  int64_t y_stride = 0, y_begin = 0, y_end = 0;
  int64_t d = 0;
  float* out = nullptr;
  int64_t out_stride_x = 0, out_stride_y = 0;
};

/// out row r, columns [k_begin, k_end) += sum over b < y_rows of
/// w[r * w_stride_row + b * w_stride_column] * y row b, for r < out_rows.
struct WeightedRowsArgs {
  const float* w = nullptr;
  int64_t w_stride_row = 0, w_stride_column = 0;
  const float* y = nullptr;
  int64_t y_stride = 0, y_rows = 0;
  float* out = nullptr;
  int64_t out_stride = 0, out_rows = 0;
  int64_t k_begin = 0, k_end = 0;
};

/// A weighted sum restarts from zero every this many y rows (and adds each
/// block's sum to the output): part of the fixed order of operations, the
/// same for every instruction set and thread count.
constexpr int64_t kWeightedSumRows = 64;

void row_dots_portable(const RowDotsArgs& args);
void row_dots_avx2(const RowDotsArgs& args);
void row_dots_avx512(const RowDotsArgs& args);
void weighted_rows_portable(const WeightedRowsArgs& args);
void weighted_rows_avx2(const WeightedRowsArgs& args);
void weighted_rows_avx512(const WeightedRowsArgs& args);

}  // namespace contaccum::detail
