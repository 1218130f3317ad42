#pragma once

// The short products' loops, written once over a 16-lane vector type `L`
// (see short_products.h for the order of operations they fix). Included by
// one file per instruction set, each compiled with that set's flags and
// defining its `L` in an anonymous namespace; everything here is in an
// anonymous namespace too, so no function compiled for one set can be
// merged by the linker into code meant for another.
//
// `L` provides, for its vector type `L::V` of 16 floats: zero, load (16
// floats), load_first (the first n, the rest zero), store, store_first,
// broadcast, fma (a * b + c, rounded once), add, and tree_sum (lanes
// l + l+8, then l + l+4, then l + l+2, then 0 + 1).

#include <cstdint>

#include "short_products_args.h"

namespace contaccum::detail {
namespace {

constexpr int kLanes = 16;

inline int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

// Dot products of x rows [i0, i0 + RX) with y rows [j0, j0 + RY).
template <class L, int RX, int RY>
inline void dot_block(const RowDotsArgs& a, int64_t i0, int64_t j0) {
  using V = typename L::V;
  V acc[RX][RY];
  const float* xs[RX];
  const float* ys[RY];
  for (int i = 0; i < RX; ++i) xs[i] = a.x + (i0 + i) * a.x_stride;
  for (int j = 0; j < RY; ++j) ys[j] = a.y + (j0 + j) * a.y_stride;
  for (int i = 0; i < RX; ++i)
    for (int j = 0; j < RY; ++j) acc[i][j] = L::zero();
  int64_t k = 0;
  for (; k + kLanes <= a.d; k += kLanes) {
    V xv[RX];
    for (int i = 0; i < RX; ++i) xv[i] = L::load(xs[i] + k);
    for (int j = 0; j < RY; ++j) {
      const V yv = L::load(ys[j] + k);
      for (int i = 0; i < RX; ++i) acc[i][j] = L::fma(xv[i], yv, acc[i][j]);
    }
  }
  if (k < a.d) {
    // The last partial vector: the lanes past d multiply zeros.
    const int rest = static_cast<int>(a.d - k);
    V xv[RX];
    for (int i = 0; i < RX; ++i) xv[i] = L::load_first(xs[i] + k, rest);
    for (int j = 0; j < RY; ++j) {
      const V yv = L::load_first(ys[j] + k, rest);
      for (int i = 0; i < RX; ++i) acc[i][j] = L::fma(xv[i], yv, acc[i][j]);
    }
  }
  for (int i = 0; i < RX; ++i)
    for (int j = 0; j < RY; ++j)
      a.out[(i0 + i) * a.out_stride_x + (j0 + j) * a.out_stride_y] = L::tree_sum(acc[i][j]) * a.alpha;
}

// Every x row against y rows [y_begin, y_end), RX x RY dot products at a time
// (RY bank rows stay in the first-level cache while every x row passes).
//
// While a block's rows are in use, the next block's are asked for, a few
// lines per x row: a bank read for the first time after a micro-batch's
// towers comes from memory, and the hardware's prefetcher stops at every
// 4 KiB page (one bank row of 1,024 floats), so without this the first x
// row of each block waits for its RY rows line by line.
template <class L, int RX, int RY>
void row_dots(const RowDotsArgs& a) {
  constexpr int64_t kLineFloats = 64 / sizeof(float);
  const int64_t row_lines = (a.d + kLineFloats - 1) / kLineFloats;
  const int64_t blocks_of_x = (a.x_rows + RX - 1) / RX;
  int64_t j = a.y_begin;
  for (; j + RY <= a.y_end; j += RY) {
    const int64_t next_rows = smaller(RY, a.y_end - (j + RY));
    const int64_t lines = next_rows > 0 ? next_rows * row_lines : 0;
    const int64_t per_x = blocks_of_x > 0 ? (lines + blocks_of_x - 1) / blocks_of_x : 0;
    // The next line's row and place in it are counted along, not divided
    // out of the line's number: a 64-bit division a line cost these
    // products a few per cent of their rate (bench/performance/notes.md).
    int64_t line = 0, row = j + RY, line_in_row = 0;
    const auto ask_next = [&] {
      for (const int64_t stop = smaller(lines, line + per_x); line < stop; ++line) {
        __builtin_prefetch(a.y + row * a.y_stride + line_in_row * kLineFloats, 0, 2);
        if (++line_in_row == row_lines) {
          line_in_row = 0;
          ++row;
        }
      }
    };
    int64_t i = 0;
    for (; i + RX <= a.x_rows; i += RX) {
      ask_next();
      dot_block<L, RX, RY>(a, i, j);
    }
    for (; i < a.x_rows; ++i) {
      ask_next();
      dot_block<L, 1, RY>(a, i, j);
    }
  }
  for (; j < a.y_end; ++j) {
    int64_t i = 0;
    for (; i + RX <= a.x_rows; i += RX) dot_block<L, RX, 1>(a, i, j);
    for (; i < a.x_rows; ++i) dot_block<L, 1, 1>(a, i, j);
  }
}

// out rows [r0, r0 + RA), columns [k0, k0 + RK * 16) (the last vector only
// its first `last` lanes when Partial) += the sum over y rows [b0, b1) of
// w[r, b] y[b], that sum started from zero. `rows` holds those columns of y
// rows [b0, b1), `rows_stride` floats apart.
template <class L, int RA, int RK, bool Partial>
inline void weighted_block(const WeightedRowsArgs& a, int64_t r0, int64_t k0, int64_t b0, int64_t b1, int last,
                           const float* rows, int64_t rows_stride) {
  using V = typename L::V;
  V acc[RA][RK];
  for (int r = 0; r < RA; ++r)
    for (int t = 0; t < RK; ++t) acc[r][t] = L::zero();
  for (int64_t b = b0; b < b1; ++b) {
    const float* row = rows + (b - b0) * rows_stride;
    V yv[RK];
    for (int t = 0; t < RK; ++t)
      yv[t] = Partial && t == RK - 1 ? L::load_first(row + t * kLanes, last) : L::load(row + t * kLanes);
    for (int r = 0; r < RA; ++r) {
      const V w = L::broadcast(a.w[(r0 + r) * a.w_stride_row + b * a.w_stride_column]);
      for (int t = 0; t < RK; ++t) acc[r][t] = L::fma(w, yv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < RA; ++r) {
    float* out = a.out + (r0 + r) * a.out_stride + k0;
    for (int t = 0; t < RK; ++t) {
      if (Partial && t == RK - 1) {
        L::store_first(out + t * kLanes, L::add(L::load_first(out + t * kLanes, last), acc[r][t]), last);
      } else {
        L::store(out + t * kLanes, L::add(L::load(out + t * kLanes), acc[r][t]));
      }
    }
  }
}

// Columns [k0, k0 + RK * 16) (the last vector `last` lanes) of every out row
// += their weighted sum over y rows [b0, b1), read from `rows` (y row b0's
// column k0 first, rows `rows_stride` floats apart).
template <class L, int RA, int RK, bool Partial>
inline void weighted_rows_of(const WeightedRowsArgs& a, int64_t k0, int64_t b0, int64_t b1, int last, const float* rows,
                             int64_t rows_stride) {
  int64_t r = 0;
  for (; r + RA <= a.out_rows; r += RA) weighted_block<L, RA, RK, Partial>(a, r, k0, b0, b1, last, rows, rows_stride);
  for (; r < a.out_rows; ++r) weighted_block<L, 1, RK, Partial>(a, r, k0, b0, b1, last, rows, rows_stride);
}

// Columns [k_begin, k_end) of every out row += their weighted sum over y rows
// [b0, b1), read where they lie, RK vectors at a time.
template <class L, int RA, int RK>
void weighted_rows_unpacked(const WeightedRowsArgs& a, int64_t b0, int64_t b1) {
  const auto at = [&](int64_t k) { return a.y + b0 * a.y_stride + k; };
  int64_t k = a.k_begin;
  for (; k + RK * kLanes <= a.k_end; k += RK * kLanes)
    weighted_rows_of<L, RA, RK, false>(a, k, b0, b1, kLanes, at(k), a.y_stride);
  for (; k + kLanes <= a.k_end; k += kLanes) weighted_rows_of<L, RA, 1, false>(a, k, b0, b1, kLanes, at(k), a.y_stride);
  if (k < a.k_end) weighted_rows_of<L, RA, 1, true>(a, k, b0, b1, static_cast<int>(a.k_end - k), at(k), a.y_stride);
}

// Columns of a packed window: kPackedVectors vectors of 16. Four make a
// 16 KiB buffer, half a 32 KiB first-level cache, which leaves room for the
// weights and the out rows the window's arithmetic reads beside it; eight
// (the whole of that cache) ran a few per cent slower on an AMD EPYC
// without AVX-512 (bench/performance/notes.md).
constexpr int64_t kPackedVectors = 4;

// The same, one vector at a time, from columns copied into a buffer first:
// rows of a wide matrix lie a multiple of 4 KiB apart (1,024 floats), so
// the same columns of 64 rows all fall into one set of the first-level
// cache, which keeps only a few of them (8 ways) while the out rows' blocks
// read them again and again; packed, each vector's 64 rows are one
// contiguous 4 KiB panel. The copy reads each row's window of up to
// kPackedVectors vectors in one run, rather than 64 bytes per row and vector,
// and asks for the next block's window meanwhile: after a micro-batch's
// towers have run, the bank is likely no longer in the cache
// (bench/performance/notes.md). The arithmetic is the same as unpacked.
template <class L, int RA>
void weighted_rows_packed(const WeightedRowsArgs& a, int64_t b0, int64_t b1) {
  alignas(64) float packed[kPackedVectors * kWeightedSumRows * kLanes];
  for (int64_t window = a.k_begin; window < a.k_end; window += kPackedVectors * kLanes) {
    const int64_t width = smaller(a.k_end - window, kPackedVectors * kLanes);
    for (int64_t b = b0; b < b1; ++b) {
      const float* from = a.y + b * a.y_stride + window;
      // One vector load and store each (a call to memcpy per 64 bytes cost
      // about half as much as the arithmetic); the lanes of a partial
      // vector past `width` are written as zeros and never read.
      for (int64_t f = 0; f < width; f += kLanes) {
        float* to = packed + (f / kLanes * kWeightedSumRows + (b - b0)) * kLanes;
        L::store(to, f + kLanes <= width ? L::load(from + f) : L::load_first(from + f, static_cast<int>(width - f)));
      }
      const int64_t ahead = b + kWeightedSumRows;  // the same row of the next block
      if (ahead < a.y_rows)
        for (int64_t f = 0; f < width; f += kLanes) __builtin_prefetch(a.y + ahead * a.y_stride + window + f);
    }
    for (int64_t f = 0; f < width; f += kLanes) {
      const float* panel = packed + f / kLanes * kWeightedSumRows * kLanes;
      if (f + kLanes <= width) {
        weighted_rows_of<L, RA, 1, false>(a, window + f, b0, b1, kLanes, panel, kLanes);
      } else {
        weighted_rows_of<L, RA, 1, true>(a, window + f, b0, b1, static_cast<int>(width - f), panel, kLanes);
      }
    }
  }
}

// out columns [k_begin, k_end) += w y, the y rows taken kWeightedSumRows at a
// time (each block's sum from zero, then added to out, in block order).
// Pack: the columns copied into panels first (weighted_rows_packed; one
// vector at a time).
template <class L, int RA, int RK, bool Pack = false>
void weighted_rows(const WeightedRowsArgs& a) {
  static_assert(!Pack || RK == 1, "the packed weighted sum takes one vector at a time");
  for (int64_t b0 = 0; b0 < a.y_rows; b0 += kWeightedSumRows) {
    const int64_t b1 = smaller(a.y_rows, b0 + kWeightedSumRows);
    if constexpr (Pack) {
      weighted_rows_packed<L, RA>(a, b0, b1);
    } else {
      weighted_rows_unpacked<L, RA, RK>(a, b0, b1);
    }
  }
}

}  // namespace
}  // namespace contaccum::detail
