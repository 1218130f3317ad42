#pragma once

// The tiled loss's element-wise work on a score tile, fused into one pass
// each and written once over the 16-lane vector type `L` of
// short_products_kernels.h (included by the same per-instruction-set files):
// folding a tile into running row log-sum-exps, and turning a tile into
// softmax weights. ATen made these a dozen passes over the tile (maximum,
// subtract, exp, sum, rescale, multiply), each a dispatch and a full read and
// write.
//
// Exact by construction, as the products are: the exponential is our own
// (below), made of operations that every instruction set rounds alike
// (fused multiply-add, multiply, add, round to nearest, exact scaling by a
// power of two), and every sum runs in an order fixed by the code: so the
// AVX-512, AVX2 and portable kernels give the same bits. (ATen's exp is
// SLEEF's on the vector part of a tensor and the C library's on the
// remainder, whose length depends on the vector width.)
//
// Beyond the ops of short_products_kernels.h, `L` provides: sub, mul, div, max
// and min with the x86 semantics (max(a, b) = a > b ? a : b, so a NaN in b
// passes through), round (to nearest, ties to even), scale_pow2(y, n) = y *
// 2^n for integral n in [-160, 130] (two exact factors, so the result
// rounds once, into the subnormals too), load_first_or (the first n floats,
// the other lanes `fill`), load_strided (16 floats `stride` apart: a row
// of a column-major tile is gathered), tree_max (lanes combined as
// tree_sum does), and lane (one lane's value).

#include <cstdint>
#include <limits>

#include "short_products_args.h"
#include "short_products_kernels.h"

namespace contaccum::detail {
namespace {

// exp(x) for every lane, within 2 units in the last place for x in
// [-87, 88] (tests/loss/softmax_tile_test.cpp holds it to that against the
// float64 exponential; at most 1 over its 1.3 million arguments), subnormal below, 0 below -104, +inf above 88.7,
// NaN for NaN. The classic scheme: x = n ln2 + r with |r| <= ln2/2
// (ln 2 in two parts, so n ln2 is exact), e^r by the degree-7 polynomial of
// S. Moshier's Cephes expf (a minimax fit on that interval), then scaled by
// 2^n.
template <class L>
inline typename L::V exp_lanes(typename L::V x) {
  using V = typename L::V;
  // Clamped so that n stays in the range scale_pow2 takes; the operand order
  // lets a NaN through (see max and min above).
  x = L::min(L::broadcast(89.0f), L::max(L::broadcast(-110.0f), x));
  const V n = L::round(L::mul(x, L::broadcast(1.44269504088896341f)));
  V r = L::fma(n, L::broadcast(-0.693359375f), x);
  r = L::fma(n, L::broadcast(2.12194440e-4f), r);
  V p = L::broadcast(1.9875691500e-4f);
  p = L::fma(p, r, L::broadcast(1.3981999507e-3f));
  p = L::fma(p, r, L::broadcast(8.3334519073e-3f));
  p = L::fma(p, r, L::broadcast(4.1665795894e-2f));
  p = L::fma(p, r, L::broadcast(1.6666665459e-1f));
  p = L::fma(p, r, L::broadcast(5.0000001201e-1f));
  p = L::fma(p, L::mul(r, r), r);
  return L::scale_pow2(L::add(p, L::broadcast(1.0f)), n);
}

template <class L>
inline float exp_one(float x) {
  return L::lane(exp_lanes<L>(L::broadcast(x)), 0);
}

// The first n floats at p (the other lanes `fill`), and the first n lanes
// of v stored at p: a whole vector straight from and to memory, a partial
// one through load_first_or / store_first's copies (which cost several
// times a load, and the tiles are mostly whole vectors).
template <class L>
inline typename L::V load_lanes(const float* p, int n, float fill) {
  return n == kLanes ? L::load(p) : L::load_first_or(p, n, fill);
}
template <class L>
inline void store_lanes(float* p, typename L::V v, int n) {
  if (n == kLanes) {
    L::store(p, v);
  } else {
    L::store_first(p, v, n);
  }
}

// max(m, lowest float) when `masked`: a row that has seen only -inf keeps a
// finite maximum, so that exp gives 0 rather than NaN.
inline float held_max(float m, bool masked) {
  const float lowest = std::numeric_limits<float>::lowest();
  return masked && !(m > lowest) && m == m ? lowest : m;
}

// Rows [row_begin, row_end) of a tile whose columns are contiguous: each
// row's maximum (lanes, then tree_max), its exp(score - new maximum) summed
// in 16 lanes (column j in lane j mod 16) and tree_sum, then
// sum = sum * exp(old max - new max) + that (a multiply, then an add).
template <class L>
void fold_logsumexp_rows(const LogSumExpTileArgs& a) {
  using V = typename L::V;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const int64_t whole = a.columns / kLanes * kLanes;
  const int rest = static_cast<int>(a.columns - whole);
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const float* row = a.scores + r * a.row_stride;
    V m = L::broadcast(minus_inf);
    for (int64_t j = 0; j < whole; j += kLanes) m = L::max(L::load(row + j), m);
    if (rest) m = L::max(L::load_first_or(row + whole, rest, minus_inf), m);
    const float old_max = a.max[r];
    const float tile_max = L::tree_max(m);
    const float new_max = held_max(old_max > tile_max ? old_max : tile_max, a.masked);
    const V centre = L::broadcast(new_max);
    V s = L::zero();
    for (int64_t j = 0; j < whole; j += kLanes) s = L::add(s, exp_lanes<L>(L::sub(L::load(row + j), centre)));
    if (rest) s = L::add(s, exp_lanes<L>(L::sub(L::load_first_or(row + whole, rest, minus_inf), centre)));
    a.sum[r] = a.sum[r] * exp_one<L>(old_max - new_max) + L::tree_sum(s);
    a.max[r] = new_max;
  }
}

// The same for a tile whose rows are contiguous (a column-major one), 16
// rows at a time in the lanes: each lane's maximum and sum run over the
// columns in order.
template <class L>
void fold_logsumexp_columns(const LogSumExpTileArgs& a) {
  using V = typename L::V;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = a.row_begin; r < a.row_end; r += kLanes) {
    const int lanes = static_cast<int>(smaller(kLanes, a.row_end - r));
    const float* first = a.scores + r;
    auto column = [&](int64_t j) { return load_lanes<L>(first + j * a.column_stride, lanes, 0.0f); };
    V m = L::broadcast(minus_inf);
    for (int64_t j = 0; j < a.columns; ++j) m = L::max(column(j), m);
    const V old_max = load_lanes<L>(a.max + r, lanes, minus_inf);
    V new_max = L::max(old_max, m);
    if (a.masked) new_max = L::max(new_max, L::broadcast(std::numeric_limits<float>::lowest()));
    V s = L::zero();
    for (int64_t j = 0; j < a.columns; ++j) s = L::add(s, exp_lanes<L>(L::sub(column(j), new_max)));
    const V rescale = exp_lanes<L>(L::sub(old_max, new_max));
    store_lanes<L>(a.sum + r, L::add(L::mul(load_lanes<L>(a.sum + r, lanes, 0.0f), rescale), s), lanes);
    store_lanes<L>(a.max + r, new_max, lanes);
  }
}

// out = exp(scores - lse[row]) * factor, element by element (so any order
// gives the same bits): a tile whose columns are contiguous in both, or
// whose rows are.
template <class L>
void softmax_weights(const SoftmaxTileArgs& a) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  const auto factor = L::broadcast(a.factor);
  if (a.scores_column_stride == 1 && a.out_column_stride == 1) {
    for (int64_t r = a.row_begin; r < a.row_end; ++r) {
      const float* in = a.scores + r * a.scores_row_stride;
      float* out = a.out + r * a.out_row_stride;
      const auto centre = L::broadcast(a.lse[r]);
      for (int64_t j = 0; j < a.columns; j += kLanes) {
        const int n = static_cast<int>(smaller(kLanes, a.columns - j));
        const auto e = exp_lanes<L>(L::sub(load_lanes<L>(in + j, n, minus_inf), centre));
        store_lanes<L>(out + j, L::mul(e, factor), n);
      }
    }
    return;
  }
  for (int64_t r = a.row_begin; r < a.row_end; r += kLanes) {
    const int lanes = static_cast<int>(smaller(kLanes, a.row_end - r));
    const auto centre = load_lanes<L>(a.lse + r, lanes, 0.0f);
    for (int64_t j = 0; j < a.columns; ++j) {
      const auto s = load_lanes<L>(a.scores + r + j * a.scores_column_stride, lanes, minus_inf);
      store_lanes<L>(a.out + r + j * a.out_column_stride, L::mul(exp_lanes<L>(L::sub(s, centre)), factor), lanes);
    }
  }
}

template <class L>
void fold_logsumexp(const LogSumExpTileArgs& a) {
  if (a.column_stride == 1) {
    fold_logsumexp_rows<L>(a);
  } else {
    fold_logsumexp_columns<L>(a);
  }
}

// log(x) for every lane, for positive normal x (callers send other values
// to log_special): within 2 units in the last place. Cephes' logf scheme:
// x = 2^e m with m within rounding of [sqrt(1/2), sqrt(2)) (e the exponent
// of x sqrt(2), then m exact by scaling), z = m - 1 (exact), log(1 + z) by
// its degree-8 polynomial, and e ln 2 added in two parts. Only operations
// that every instruction set rounds alike, as in exp_lanes.
template <class L>
inline typename L::V log_lanes(typename L::V x) {
  using V = typename L::V;
  const V e = L::exponent(L::mul(x, L::broadcast(1.41421356237f)));
  const V z = L::sub(L::scale_pow2(x, L::sub(L::zero(), e)), L::broadcast(1.0f));
  const V y = L::mul(z, z);
  V p = L::broadcast(7.0376836292e-2f);
  p = L::fma(p, z, L::broadcast(-1.1514610310e-1f));
  p = L::fma(p, z, L::broadcast(1.1676998740e-1f));
  p = L::fma(p, z, L::broadcast(-1.2420140846e-1f));
  p = L::fma(p, z, L::broadcast(1.4249322787e-1f));
  p = L::fma(p, z, L::broadcast(-1.6668057665e-1f));
  p = L::fma(p, z, L::broadcast(2.0000714765e-1f));
  p = L::fma(p, z, L::broadcast(-2.4999993993e-1f));
  p = L::fma(p, z, L::broadcast(3.3333331174e-1f));
  V r = L::mul(L::mul(p, z), y);
  r = L::fma(e, L::broadcast(-2.12194440e-4f), r);
  r = L::fma(y, L::broadcast(-0.5f), r);
  return L::fma(e, L::broadcast(0.693359375f), L::add(z, r));
}

// log(1 + t) for t in [0, 1]: log(u) for u = 1 + t rounded, plus the
// rounding's share (t - (u - 1)) / u (u - 1 is exact).
template <class L>
inline typename L::V log1p_unit_lanes(typename L::V t) {
  const auto u = L::add(L::broadcast(1.0f), t);
  return L::add(log_lanes<L>(u), L::div(L::sub(t, L::sub(u, L::broadcast(1.0f))), u));
}

// log(e^a + e^b) for finite a, b: the larger plus log(1 + e^(smaller -
// larger)).
template <class L>
inline typename L::V logaddexp_lanes(typename L::V a, typename L::V b) {
  const auto high = L::max(a, b);
  return L::add(high, log1p_unit_lanes<L>(exp_lanes<L>(L::sub(L::min(a, b), high))));
}

inline bool positive_normal(float x) {
  return x >= std::numeric_limits<float>::min() && x <= std::numeric_limits<float>::max();
}
inline bool finite(float x) { return x - x == 0.0f; }

// The values log_lanes is not for: log(0) = -inf, log(inf) = inf, NaN for
// NaN and negative x; a subnormal x scaled into the normal range first.
template <class L>
inline float log_special(float x) {
  if (x == 0.0f) return -std::numeric_limits<float>::infinity();
  if (!(x > 0.0f) || x == std::numeric_limits<float>::infinity())
    return x > 0.0f ? x : std::numeric_limits<float>::quiet_NaN();
  // 2^24 x is normal; log(x) = log(2^24 x) - 24 ln 2, ln 2 in its two parts
  // (24 x 0.693359375 is exact).
  const float scaled = L::lane(log_lanes<L>(L::broadcast(x * 16777216.0f)), 0);
  return (scaled + 24.0f * 2.12194440e-4f) - 16.640625f;
}

// logaddexp where a or b is not finite: NaN if either is, the larger if it
// is infinite (-inf when both are), else the finite formula.
template <class L>
inline float logaddexp_special(float a, float b) {
  if (a != a || b != b) return std::numeric_limits<float>::quiet_NaN();
  const float high = a > b ? a : b;
  if (!finite(high)) return high;
  return L::lane(logaddexp_lanes<L>(L::broadcast(a), L::broadcast(b)), 0);
}

// out[i] = base[i] + log(x[i]) (out may be base), 16 at a time; a vector
// holding a value log_lanes is not for goes lane by lane.
template <class L>
void add_log_floats(const float* base, const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const int k = static_cast<int>(smaller(kLanes, n - i));
    bool plain = true;
    for (int l = 0; l < k; ++l) plain = plain && positive_normal(x[i + l]);
    if (plain) {
      store_lanes<L>(out + i, L::add(load_lanes<L>(base + i, k, 0.0f), log_lanes<L>(load_lanes<L>(x + i, k, 1.0f))), k);
      continue;
    }
    for (int l = 0; l < k; ++l) {
      const float v = x[i + l];
      out[i + l] = base[i + l] + (positive_normal(v) ? L::lane(log_lanes<L>(L::broadcast(v)), 0) : log_special<L>(v));
    }
  }
}

// Whether every lane of a and b is finite, in one vector test: x - x is 0
// for a finite x and NaN for an infinite or NaN one, and NaN passes through
// every add of the sum. (Testing the 32 floats one by one cost several
// times the arithmetic they guard: bench/performance/notes.md.)
template <class L>
inline bool all_finite(typename L::V a, typename L::V b) {
  return L::tree_sum(L::add(L::sub(a, a), L::sub(b, b))) == 0.0f;
}

// out[i] = log(e^a[i] + e^b[i]) (out may be a or b), as add_log_floats.
template <class L>
void logaddexp_floats(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const int k = static_cast<int>(smaller(kLanes, n - i));
    const auto va = load_lanes<L>(a + i, k, 0.0f), vb = load_lanes<L>(b + i, k, 0.0f);
    if (all_finite<L>(va, vb)) {
      store_lanes<L>(out + i, logaddexp_lanes<L>(va, vb), k);
      continue;
    }
    for (int l = 0; l < k; ++l) out[i + l] = logaddexp_special<L>(a[i + l], b[i + l]);
  }
}

template <class L>
void exp_floats(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const int k = static_cast<int>(smaller(kLanes, n - i));
    store_lanes<L>(out + i, exp_lanes<L>(load_lanes<L>(x + i, k, 0.0f)), k);
  }
}

}  // namespace
}  // namespace contaccum::detail
