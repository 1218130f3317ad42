#include "contaccum/loss/short_products.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "chosen_kernel.h"
#include "contaccum/core/cpu_features.h"
#include "contaccum/core/helper_thread.h"
#include "contaccum/core/stopwatch.h"
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
      return cpu_features().avx2 && cpu_features().fma;
    case ShortProductIsa::Avx512:
      return cpu_features().avx512f && cpu_features().fma;
#else
    default:
      return false;  // built without the x86 kernels
#endif
  }
  return false;
}

std::atomic<bool>& products_enabled() {
  static std::atomic<bool> enabled{true};
  return enabled;
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

template <typename Args>
using Kernel = void (*)(const Args&);

// short_product_stats' sums (nanoseconds and operations as integers, so that
// threads add to them without a lock).
struct StatsCounters {
  std::atomic<int64_t> calls{0}, nanoseconds{0}, flop{0};
};

StatsCounters& stats_counters() {
  static StatsCounters counters;
  return counters;
}

// Adds one product's wall time (construction to destruction) and operations
// to the stats, so that a benchmark can compare the products' rate inside
// whole training steps with their rate alone.
class TimedProduct {
 public:
  explicit TimedProduct(int64_t flop) : flop_(flop) {}
  ~TimedProduct() {
    auto& counters = stats_counters();
    counters.calls.fetch_add(1, std::memory_order_relaxed);
    counters.nanoseconds.fetch_add(std::llround(watch_.seconds() * 1e9), std::memory_order_relaxed);
    counters.flop.fetch_add(flop_, std::memory_order_relaxed);
  }
  TimedProduct(const TimedProduct&) = delete;
  TimedProduct& operator=(const TimedProduct&) = delete;

 private:
  int64_t flop_;
  Stopwatch watch_;
};

// Runs `kernel` over [0, total) in pieces shared among the threads;
// `set_range(args, begin, end)` narrows a copy of `args` to one piece.
template <typename Args, typename SetRange>
void run_in_pieces(const Args& args, Kernel<Args> kernel, const Pieces& pieces, int64_t total, SetRange set_range) {
  share_out(pieces.count, [&](int64_t c) {
    Args part = args;
    set_range(part, c * pieces.size, std::min(total, (c + 1) * pieces.size));
    kernel(part);
  });
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

void set_short_products_enabled(bool enabled) { products_enabled() = enabled; }

bool short_products_enabled() { return products_enabled().load(); }

bool row_dots_short(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y) {
  return short_products_enabled() && std::min(x.size(0), y.size(0)) <= kShortSideRows && float_cpu_matrix(out) &&
         float_cpu_matrix(x) && float_cpu_matrix(y) && x.stride(1) == 1 && y.stride(1) == 1;
}

bool weighted_rows_short(const torch::Tensor& out, const torch::Tensor& w, const torch::Tensor& y) {
  return short_products_enabled() && out.size(0) <= kShortSideRows && float_cpu_matrix(out) && float_cpu_matrix(w) &&
         float_cpu_matrix(y) && y.stride(1) == 1 && out.stride(1) == 1;
}

void row_dots_out(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y, double alpha) {
  TORCH_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1) && out.dim() == 2 && out.size(0) == x.size(0) &&
                  out.size(1) == y.size(0),
              "row_dots_out: shapes must be out [nx, ny], x [nx, d], y [ny, d], got out ", out.sizes(), ", x ",
              x.sizes(), ", y ", y.sizes());
  if (!row_dots_short(out, x, y)) {
    auto result = out;
    at::mm_out(result, x, y.t());
    if (alpha != 1.0) result.mul_(alpha);
    return;
  }
  const TimedProduct timed(2 * x.size(0) * y.size(0) * x.size(1));
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
  args.alpha = static_cast<float>(alpha);
  const int64_t rows = long_side.size(0);
  run_in_pieces(args,
                detail::chosen_kernel<Kernel<RowDotsArgs>>(&detail::row_dots_avx512, &detail::row_dots_avx2,
                                                           &detail::row_dots_portable),
                Pieces(rows, 12, 48), rows,
                [](RowDotsArgs& part, int64_t begin, int64_t end) { part.y_begin = begin, part.y_end = end; });
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
  const TimedProduct timed(2 * w.size(0) * w.size(1) * y.size(1));
  WeightedRowsArgs args;
  args.w = w.data_ptr<float>(), args.w_stride_row = w.stride(0), args.w_stride_column = w.stride(1);
  args.y = y.data_ptr<float>(), args.y_stride = y.stride(0), args.y_rows = y.size(0);
  args.out = out.data_ptr<float>(), args.out_stride = out.stride(0), args.out_rows = out.size(0);
  // The columns are split among the threads, in whole 64-float blocks.
  const int64_t d = y.size(1);
  run_in_pieces(args,
                detail::chosen_kernel<Kernel<WeightedRowsArgs>>(
                    &detail::weighted_rows_avx512, &detail::weighted_rows_avx2, &detail::weighted_rows_portable),
                Pieces(d, 64, 64), d,
                [](WeightedRowsArgs& part, int64_t begin, int64_t end) { part.k_begin = begin, part.k_end = end; });
}

ShortProductStats short_product_stats() {
  const auto& counters = stats_counters();
  ShortProductStats s;
  s.calls = counters.calls.load(std::memory_order_relaxed);
  s.seconds = 1e-9 * static_cast<double>(counters.nanoseconds.load(std::memory_order_relaxed));
  s.flop = static_cast<double>(counters.flop.load(std::memory_order_relaxed));
  return s;
}

}  // namespace contaccum
