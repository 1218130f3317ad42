#pragma once

// Matrix products with one short side (tens of rows: a micro-batch against a
// bank of thousands), computed without packing the long side, in an order of
// operations that gives the same bits on every x86 CPU.
//
// Why not BLAS: for a product of 32 rows against a bank of m rows, OpenBLAS
// copies ("packs") the whole bank into its panel layout on every call, and a
// ContAccum micro-batch makes four such products, each touching every bank
// row once; the copy costs about as much as the arithmetic. These kernels
// read the bank's rows where they lie: a score is a dot product of two
// contiguous rows, and a gradient row is a sum of bank rows weighted by the
// tile, both already in the layout the arithmetic wants.
//
// The tiled loss makes its products with these (a ContAccum micro-batch
// against its banks, and its in-batch block). Two threads share a product:
// the caller and one helper that, like OpenBLAS's worker, keeps polling for
// a while after each product instead of sleeping at once, so that it gets
// the second core while OpenBLAS's own worker spins there; when the helper
// is found on the caller's own core, the caller confines it to the others.
//
// Exact by construction: every output element is computed in an order fixed
// by the code, not by the CPU or the thread count. A dot product keeps 16
// partial sums (element k goes to sum k mod 16, each a chain of fused
// multiply-adds in k order) and adds them in one fixed tree; a weighted sum
// of rows runs its own chain of fused multiply-adds per element, in row
// order, restarting at every 64 rows and adding each block's sum to the
// output. The AVX-512 kernel, the AVX2 one (16 lanes as two halves of 8) and
// the portable one (std::fma lane by lane) therefore give the same bits, and
// so do one thread and two (threads share out whole output elements).

#include <torch/types.h>

namespace contaccum {

/// The instruction sets the kernels are written for.
enum class ShortProductIsa { Portable, Avx2, Avx512 };

/// The best set this CPU (and its operating system) runs.
ShortProductIsa best_short_product_isa();

/// The set the kernels use: the best one unless `set_short_product_isa`
/// chose another (tests compare them).
ShortProductIsa short_product_isa();

/// Chooses the kernels' instruction set; it must be one this CPU runs.
void set_short_product_isa(ShortProductIsa isa);

/// Whether `row_dots_out` and `add_weighted_rows_` use these kernels at all
/// (default: true); false sends every product to LibTorch, process-wide
/// (the bank benchmark times the loss both ways).
void set_short_products_enabled(bool enabled);
bool short_products_enabled();

/// A product is "short" when its short side has at most this many rows.
/// Chosen, not tuned: at 32 rows (a micro-batch against a bank) these
/// kernels beat OpenBLAS (bench/banks); tiles of hundreds of rows
/// (GradCache's) stay with BLAS's blocking, which reuses each packed panel
/// across many rows.
constexpr int64_t kShortSideRows = 64;

/// `out[i, j] = (x[i] . y[j]) * alpha` for `x [nx, d]`, `y [ny, d]`: with
/// these kernels when `min(nx, ny) <= kShortSideRows` and every operand is a
/// float32 CPU matrix with contiguous rows in `x` and `y` (`out` may have
/// any strides, a transposed view included); otherwise `at::mm_out`, then
/// `mul_(alpha)` unless alpha is 1. Either way each dot product is rounded
/// to `out`'s type before it is multiplied (alpha rounded to that type too,
/// as ATen rounds a scalar), so the kernels give `mm_out` + `mul_`'s
/// rounding. `out` must not overlap `x` or `y`.
void row_dots_out(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y, double alpha = 1.0);

/// `out += w y` for `w [n, m]`, `y [m, d]`, `out [n, d]`: with these kernels
/// when `n <= kShortSideRows` and every operand is a float32 CPU matrix with
/// contiguous rows in `y` and `out` (`w` may have any strides); otherwise
/// `addmm_`. `out` must not overlap `w` or `y`.
void add_weighted_rows_(const torch::Tensor& out, const torch::Tensor& w, const torch::Tensor& y);

/// Whether `row_dots_out` / `add_weighted_rows_` use these kernels for
/// these operands (rather than LibTorch's product).
bool row_dots_short(const torch::Tensor& out, const torch::Tensor& x, const torch::Tensor& y);
bool weighted_rows_short(const torch::Tensor& out, const torch::Tensor& w, const torch::Tensor& y);

/// What the products made by these kernels cost (`short_product_stats`).
struct ShortProductStats {
  /// Products made by these kernels (not those sent to LibTorch). Default: 0.
  int64_t calls = 0;
  /// Their wall time, from the call's start to its return (both threads'
  /// work and the wait for the slower), in seconds. Default: 0.
  double seconds = 0;
  /// Their floating-point operations, 2 x rows x columns x depth each.
  /// Default: 0.
  double flop = 0;
};

/// The products made by these kernels since the process started, every
/// thread's calls summed. Benchmarks take two readings and compare the
/// products' rate inside whole training steps with their rate alone. The
/// three sums are read one after another: a reading taken while another
/// thread finishes a product may count that product's call and not yet its
/// time, so read between the work measured, not during it.
ShortProductStats short_product_stats();

}  // namespace contaccum
