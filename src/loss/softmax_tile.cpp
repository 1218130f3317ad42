#include "contaccum/loss/softmax_tile.h"

#include <torch/torch.h>

#include <algorithm>

#include "chosen_kernel.h"
#include "contaccum/core/helper_thread.h"
#include "contaccum/loss/short_products.h"
#include "short_products_args.h"

namespace contaccum {
using detail::LogSumExpTileArgs;
using detail::SoftmaxTileArgs;
namespace {

template <typename Args>
using Kernel = void (*)(const Args&);

bool float_cpu(const torch::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == torch::kFloat; }

bool taken(const torch::Tensor& tile) {
  return short_products_enabled() && float_cpu(tile) && tile.dim() == 2 && (tile.stride(1) == 1 || tile.stride(0) == 1);
}

bool row_vector(const torch::Tensor& v, int64_t rows) {
  return float_cpu(v) && v.dim() == 1 && v.size(0) == rows && v.is_contiguous();
}

// Rows [0, rows) in about eight pieces of whole multiples of `step` rows
// (each piece a fixed set of rows, so which thread takes it changes no bit),
// shared by the caller and the short products' helper; one piece when the
// tile is too small to be worth sharing.
template <typename Args>
void run_over_rows(Args args, Kernel<Args> kernel, int64_t rows, int64_t columns, int64_t step) {
  constexpr int64_t kLeastPiece = 4096;  // elements
  const int64_t least_rows = std::max<int64_t>(1, kLeastPiece / std::max<int64_t>(1, columns));
  int64_t size = std::max(least_rows, (rows + 7) / 8);
  size = (size + step - 1) / step * step;
  const int64_t pieces = (rows + size - 1) / size;
  share_out(pieces, [&](int64_t p) {
    Args part = args;
    part.row_begin = p * size;
    part.row_end = std::min(rows, (p + 1) * size);
    kernel(part);
  });
}

}  // namespace

bool fold_logsumexp_tile(const torch::Tensor& scores, const torch::Tensor& max, const torch::Tensor& sum, bool masked) {
  const int64_t rows = scores.dim() == 2 ? scores.size(0) : -1;
  if (!taken(scores) || !row_vector(max, rows) || !row_vector(sum, rows)) return false;
  if (rows == 0 || scores.size(1) == 0) return true;
  LogSumExpTileArgs args;
  args.scores = scores.data_ptr<float>();
  args.row_stride = scores.stride(0), args.column_stride = scores.stride(1), args.columns = scores.size(1);
  // A one-column tile has both strides "1" in effect: read it row-wise.
  if (args.columns == 1) args.column_stride = 1;
  args.max = max.data_ptr<float>(), args.sum = sum.data_ptr<float>();
  args.masked = masked;
  run_over_rows(args,
                detail::chosen_kernel(&detail::fold_logsumexp_avx512, &detail::fold_logsumexp_avx2,
                                      &detail::fold_logsumexp_portable),
                rows, args.columns, args.column_stride == 1 ? 1 : 16);
  return true;
}

bool softmax_weights_tile(const torch::Tensor& out, const torch::Tensor& scores, const torch::Tensor& lse,
                          double factor) {
  if (!taken(scores) || !taken(out)) return false;
  const bool by_rows = scores.stride(1) == 1 && out.stride(1) == 1;
  if (!by_rows && !(scores.stride(0) == 1 && out.stride(0) == 1)) return false;
  const int64_t rows = scores.size(0);
  if (!row_vector(lse, rows)) return false;
  TORCH_CHECK(out.sizes() == scores.sizes(), "softmax_weights_tile: out must have the scores' shape ", scores.sizes(),
              ", got ", out.sizes());
  if (scores.numel() == 0) return true;
  SoftmaxTileArgs args;
  args.scores = scores.data_ptr<float>();
  args.scores_row_stride = scores.stride(0), args.scores_column_stride = scores.stride(1);
  args.lse = lse.data_ptr<float>();
  // The factor rounded to float32 as ATen rounds a scalar for a float tensor.
  args.factor = static_cast<float>(factor);
  args.out = out.data_ptr<float>();
  args.out_row_stride = out.stride(0), args.out_column_stride = out.stride(1);
  args.columns = scores.size(1);
  run_over_rows(args,
                detail::chosen_kernel(&detail::softmax_weights_avx512, &detail::softmax_weights_avx2,
                                      &detail::softmax_weights_portable),
                rows, args.columns, by_rows ? 1 : 16);
  return true;
}

namespace {
// out[i] = base[i] + log(x[i]) on the chosen instruction set.
void add_log_floats(const float* base, const float* x, float* out, int64_t n) {
  using AddLog = void (*)(const float*, const float*, float*, int64_t);
  const AddLog kernel = detail::chosen_kernel<AddLog>(&detail::add_log_floats_avx512, &detail::add_log_floats_avx2,
                                                      &detail::add_log_floats_portable);
  kernel(base, x, out, n);
}
}  // namespace

bool tile_add_log_out(const torch::Tensor& out, const torch::Tensor& base, const torch::Tensor& x) {
  const int64_t n = x.dim() == 1 ? x.size(0) : -1;
  if (!short_products_enabled() || !row_vector(x, n) || !row_vector(base, n) || !row_vector(out, n)) return false;
  add_log_floats(base.data_ptr<float>(), x.data_ptr<float>(), out.data_ptr<float>(), n);
  return true;
}

void tile_logaddexp_floats(float* out, const float* a, const float* b, int64_t n) {
  using LogAddExp = void (*)(const float*, const float*, float*, int64_t);
  const LogAddExp kernel = detail::chosen_kernel<LogAddExp>(
      &detail::logaddexp_floats_avx512, &detail::logaddexp_floats_avx2, &detail::logaddexp_floats_portable);
  kernel(a, b, out, n);
}

bool tile_logaddexp_out(const torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b) {
  if (!short_products_enabled() || out.dim() < 1 || out.dim() > 2) return false;
  for (const auto* t : {&out, &a, &b}) {
    if (!float_cpu(*t) || t->sizes() != out.sizes() || t->stride(-1) != 1) return false;
  }
  const int64_t rows = out.dim() == 2 ? out.size(0) : 1, columns = out.size(-1);
  const auto stride = [](const torch::Tensor& t) { return t.dim() == 2 ? t.stride(0) : 0; };
  const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>();
  float* po = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    tile_logaddexp_floats(po + r * stride(out), pa + r * stride(a), pb + r * stride(b), columns);
  return true;
}

torch::Tensor tile_log(const torch::Tensor& x) {
  TORCH_CHECK(float_cpu(x), "tile_log: x must be a float32 CPU tensor, got ", x.scalar_type(), " on ", x.device());
  const auto in = x.contiguous().view({-1});
  auto out = torch::zeros_like(in);  // the base: 0 + log(x)
  add_log_floats(out.data_ptr<float>(), in.data_ptr<float>(), out.data_ptr<float>(), in.numel());
  return out.view(x.sizes());
}

torch::Tensor tile_exp(const torch::Tensor& x) {
  TORCH_CHECK(float_cpu(x), "tile_exp: x must be a float32 CPU tensor, got ", x.scalar_type(), " on ", x.device());
  const auto in = x.contiguous();
  auto out = torch::empty_like(in);
  using ExpFloats = void (*)(const float*, float*, int64_t);
  const ExpFloats kernel = detail::chosen_kernel<ExpFloats>(&detail::exp_floats_avx512, &detail::exp_floats_avx2,
                                                            &detail::exp_floats_portable);
  kernel(in.data_ptr<float>(), out.data_ptr<float>(), in.numel());
  return out;
}

}  // namespace contaccum
