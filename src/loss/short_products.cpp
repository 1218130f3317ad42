#include "contaccum/loss/short_products.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "contaccum/core/compute_threads.h"
#include "short_products_args.h"

namespace contaccum {
using detail::RowDotsArgs;
using detail::WeightedRowsArgs;
namespace {

bool cpu_runs(ShortProductIsa isa) {
  switch (isa) {
    case ShortProductIsa::Portable:
      return true;
#ifdef CONTACCUM_X86_KERNELS
    case ShortProductIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ShortProductIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#else
    default:
      return false;  // built without the x86 kernels
#endif
  }
  return false;
}

std::atomic<ShortProductIsa>& chosen_isa() {
  static std::atomic<ShortProductIsa> isa{best_short_product_isa()};
  return isa;
}

const char* isa_name(ShortProductIsa isa) {
  switch (isa) {
    case ShortProductIsa::Portable:
      return "portable";
    case ShortProductIsa::Avx2:
      return "AVX2";
    case ShortProductIsa::Avx512:
      return "AVX-512";
  }
  return "unknown";
}

// How many threads share a product: as many as the BLAS it replaces would
// use (OpenBLAS's pool, which `set_compute_threads` sets; LibTorch's own
// count where the BLAS is another), the calling thread plus helpers from
// LibTorch's inter-op pool.
int product_threads() {
  const int blas = blas_threads();
  const int wanted = blas > 0 ? blas : at::get_num_threads();
  return std::max(1, std::min(wanted, 1 + at::get_num_interop_threads()));
}

// Runs work(c) for every chunk c in [0, chunks) on the calling thread and up
// to `threads - 1` helpers, each taking the next chunk until none is left.
// The caller never waits for a helper to start (one that starts after the
// chunks are gone, or never, changes nothing), only for the chunks a helper
// took to finish; each chunk is a fixed set of outputs, so which thread
// takes it changes no bit.
class ChunkQueue : public std::enable_shared_from_this<ChunkQueue> {
 public:
  ChunkQueue(int64_t chunks, const std::function<void(int64_t)>& work) : chunks_(chunks), work_(&work) {}

  void run(int threads) {
    for (int h = 1; h < threads; ++h) {
      at::launch([self = shared_from_this()] { self->help(); });
    }
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    closed_ = true;
    idle_.wait(lock, [this] { return helping_ == 0; });
  }

 private:
  void help() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;  // the caller has finished and may have gone
      ++helping_;
    }
    drain();
    std::lock_guard<std::mutex> lock(mutex_);
    --helping_;
    idle_.notify_all();
  }
  void drain() {
    for (int64_t c = next_++; c < chunks_; c = next_++) (*work_)(c);
  }

  const int64_t chunks_;
  const std::function<void(int64_t)>* work_;
  std::atomic<int64_t> next_{0};
  std::mutex mutex_;
  std::condition_variable idle_;
  int helping_ = 0;
  bool closed_ = false;
};

void share_out(int64_t chunks, const std::function<void(int64_t)>& work) {
  const int threads = static_cast<int>(std::min<int64_t>(product_threads(), chunks));
  if (threads <= 1) {
    for (int64_t c = 0; c < chunks; ++c) work(c);
    return;
  }
  std::make_shared<ChunkQueue>(chunks, work)->run(threads);
}

// [0, total) in pieces of whole multiples of `step`, about eight of them
// (enough to even out two threads), none under `least`.
struct Pieces {
  int64_t size, count;
  Pieces(int64_t total, int64_t step, int64_t least) {
    const int64_t target = std::max(least, (total + 7) / 8);
    size = std::max<int64_t>(step, (target + step - 1) / step * step);
    count = (total + size - 1) / size;
  }
};

bool float_cpu_matrix(const torch::Tensor& t) {
  return t.defined() && t.dim() == 2 && t.device().is_cpu() && t.scalar_type() == torch::kFloat;
}

}  // namespace

ShortProductIsa best_short_product_isa() {
  for (auto isa : {ShortProductIsa::Avx512, ShortProductIsa::Avx2})
    if (cpu_runs(isa)) return isa;
  return ShortProductIsa::Portable;
}

ShortProductIsa short_product_isa() { return chosen_isa().load(); }

void set_short_product_isa(ShortProductIsa isa) {
  TORCH_CHECK(cpu_runs(isa), "set_short_product_isa: this CPU does not run the ", isa_name(isa), " kernels");
  chosen_isa() = isa;
}

bool row_dots_short(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y) {
  return std::min(x.size(0), y.size(0)) <= kShortSideRows && float_cpu_matrix(out) && float_cpu_matrix(x) &&
         float_cpu_matrix(y) && x.stride(1) == 1 && y.stride(1) == 1;
}

bool weighted_rows_short(const torch::Tensor& out, const torch::Tensor& w, const torch::Tensor& y) {
  return out.size(0) <= kShortSideRows && float_cpu_matrix(out) && float_cpu_matrix(w) && float_cpu_matrix(y) &&
         y.stride(1) == 1 && out.stride(1) == 1;
}

void row_dots_out(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y) {
  TORCH_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1) && out.dim() == 2 && out.size(0) == x.size(0) &&
                  out.size(1) == y.size(0),
              "row_dots_out: shapes must be out [nx, ny], x [nx, d], y [ny, d], got out ", out.sizes(), ", x ",
              x.sizes(), ", y ", y.sizes());
  if (!row_dots_short(out, x, y)) {
    auto result = out;
    at::mm_out(result, x, y.t());
    return;
  }
  // The short side is x: the long one (the bank) is split among the threads.
  const bool swap = x.size(0) > y.size(0);
  const auto& short_side = swap ? y : x;
  const auto& long_side = swap ? x : y;
  RowDotsArgs args;
  args.x = short_side.data_ptr<float>(), args.x_stride = short_side.stride(0), args.x_rows = short_side.size(0);
  args.y = long_side.data_ptr<float>(), args.y_stride = long_side.stride(0);
  args.d = x.size(1);
  args.out = out.data_ptr<float>();
  args.out_stride_x = out.stride(swap ? 1 : 0), args.out_stride_y = out.stride(swap ? 0 : 1);
  const auto kernel = [] {
    switch (short_product_isa()) {
#ifdef CONTACCUM_X86_KERNELS
      case ShortProductIsa::Avx512:
        return &detail::row_dots_avx512;
      case ShortProductIsa::Avx2:
        return &detail::row_dots_avx2;
#endif
      default:
        return &detail::row_dots_portable;
    }
  }();
  const int64_t rows = long_side.size(0);
  const Pieces pieces(rows, 12, 48);
  share_out(pieces.count, [&](int64_t c) {
    RowDotsArgs part = args;
    part.y_begin = c * pieces.size, part.y_end = std::min(rows, part.y_begin + pieces.size);
    kernel(part);
  });
}

void add_weighted_rows_(const torch::Tensor& out, const torch::Tensor& w, const torch::Tensor& y) {
  TORCH_CHECK(w.dim() == 2 && y.dim() == 2 && w.size(1) == y.size(0) && out.dim() == 2 && out.size(0) == w.size(0) &&
                  out.size(1) == y.size(1),
              "add_weighted_rows_: shapes must be out [n, d], w [n, m], y [m, d], got out ", out.sizes(), ", w ",
              w.sizes(), ", y ", y.sizes());
  if (!weighted_rows_short(out, w, y)) {
    auto result = out;
    result.addmm_(w, y);
    return;
  }
  WeightedRowsArgs args;
  args.w = w.data_ptr<float>(), args.w_stride_row = w.stride(0), args.w_stride_column = w.stride(1);
  args.y = y.data_ptr<float>(), args.y_stride = y.stride(0), args.y_rows = y.size(0);
  args.out = out.data_ptr<float>(), args.out_stride = out.stride(0), args.out_rows = out.size(0);
  const auto kernel = [] {
    switch (short_product_isa()) {
#ifdef CONTACCUM_X86_KERNELS
      case ShortProductIsa::Avx512:
        return &detail::weighted_rows_avx512;
      case ShortProductIsa::Avx2:
        return &detail::weighted_rows_avx2;
#endif
      default:
        return &detail::weighted_rows_portable;
    }
  }();
  // The columns are split among the threads, in whole 64-float blocks.
  const int64_t d = y.size(1);
  const Pieces pieces(d, 64, 64);
  share_out(pieces.count, [&](int64_t c) {
    WeightedRowsArgs part = args;
    part.k_begin = c * pieces.size, part.k_end = std::min(d, part.k_begin + pieces.size);
    kernel(part);
  });
}

}  // namespace contaccum
