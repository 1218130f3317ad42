#pragma once

// What the short products' kernels (one per instruction set) take: plain
// pointers and sizes, so that their files need no LibTorch header.

#include <cstdint>

namespace contaccum::detail {

/// out[i * out_stride_x + j * out_stride_y] = (x row i . y row j) * alpha
/// (the dot product rounded, then multiplied) for every x row i < x_rows and
/// y rows j in [y_begin, y_end); rows of d floats.
struct RowDotsArgs {
  const float* x = nullptr;
  int64_t x_stride = 0, x_rows = 0;
  const float* y = nullptr;
  int64_t y_stride = 0, y_begin = 0, y_end = 0;
  int64_t d = 0;
  float* out = nullptr;
  int64_t out_stride_x = 0, out_stride_y = 0;
  float alpha = 1;
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

/// Folds tile rows [row_begin, row_end) (`columns` scores each; element (r,
/// j) at r * row_stride + j * column_stride, one of the two strides 1) into
/// the running log-sum-exps max[r], sum[r] (softmax_tile_kernels.h).
/// `masked`: a row may have seen only -inf so far.
struct LogSumExpTileArgs {
  const float* scores = nullptr;
  int64_t row_stride = 0, column_stride = 0, columns = 0;
  int64_t row_begin = 0, row_end = 0;
  float* max = nullptr;
  float* sum = nullptr;
  bool masked = false;
};

/// out(r, j) = exp(scores(r, j) - lse[r]) * factor for rows [row_begin,
/// row_end): both column strides 1, or both row strides 1.
struct SoftmaxTileArgs {
  const float* scores = nullptr;
  int64_t scores_row_stride = 0, scores_column_stride = 0;
  const float* lse = nullptr;
  float factor = 1;
  float* out = nullptr;
  int64_t out_row_stride = 0, out_column_stride = 0;
  int64_t columns = 0, row_begin = 0, row_end = 0;
};

void row_dots_portable(const RowDotsArgs& args);
void row_dots_avx2(const RowDotsArgs& args);
void row_dots_avx512(const RowDotsArgs& args);
void weighted_rows_portable(const WeightedRowsArgs& args);
void weighted_rows_avx2(const WeightedRowsArgs& args);
void weighted_rows_avx512(const WeightedRowsArgs& args);
void fold_logsumexp_portable(const LogSumExpTileArgs& args);
void fold_logsumexp_avx2(const LogSumExpTileArgs& args);
void fold_logsumexp_avx512(const LogSumExpTileArgs& args);
void softmax_weights_portable(const SoftmaxTileArgs& args);
void softmax_weights_avx2(const SoftmaxTileArgs& args);
void softmax_weights_avx512(const SoftmaxTileArgs& args);
/// exp of each of `n` floats, as the kernels compute it (for tests).
void exp_floats_portable(const float* x, float* out, int64_t n);
void exp_floats_avx2(const float* x, float* out, int64_t n);
void exp_floats_avx512(const float* x, float* out, int64_t n);
/// out[i] = base[i] + log(x[i]) for `n` floats, the kernels' own logarithm
/// (out may be base).
void add_log_floats_portable(const float* base, const float* x, float* out, int64_t n);
void add_log_floats_avx2(const float* base, const float* x, float* out, int64_t n);
void add_log_floats_avx512(const float* base, const float* x, float* out, int64_t n);
/// out[i] = log(exp(a[i]) + exp(b[i])) for `n` floats (out may be a or b).
void logaddexp_floats_portable(const float* a, const float* b, float* out, int64_t n);
void logaddexp_floats_avx2(const float* a, const float* b, float* out, int64_t n);
void logaddexp_floats_avx512(const float* a, const float* b, float* out, int64_t n);

}  // namespace contaccum::detail
