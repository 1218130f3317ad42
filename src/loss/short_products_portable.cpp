// The short products in portable C++ for CPUs without AVX2 and FMA: each
// lane's multiply-add is std::fma (rounded once, as the vector instructions
// round), so the results are the vector kernels' bit for bit.

#include <cmath>
#include <cstring>

#include "short_products_kernels.h"

namespace contaccum::detail {
namespace {

struct Portable {
  struct V {
    float lane[16];
  };
  static V zero() { return V{}; }
  static V load(const float* p) {
    V v;
    std::memcpy(v.lane, p, sizeof v.lane);
    return v;
  }
  static V load_first(const float* p, int n) {
    V v{};
    std::memcpy(v.lane, p, sizeof(float) * static_cast<size_t>(n));
    return v;
  }
  static void store(float* p, const V& v) { std::memcpy(p, v.lane, sizeof v.lane); }
  static void store_first(float* p, const V& v, int n) {
    std::memcpy(p, v.lane, sizeof(float) * static_cast<size_t>(n));
  }
  static V broadcast(float x) {
    V v;
    for (float& l : v.lane) l = x;
    return v;
  }
  static V fma(const V& a, const V& b, const V& c) {
    V v;
    for (int l = 0; l < 16; ++l) v.lane[l] = std::fma(a.lane[l], b.lane[l], c.lane[l]);
    return v;
  }
  static V add(const V& a, const V& b) {
    V v;
    for (int l = 0; l < 16; ++l) v.lane[l] = a.lane[l] + b.lane[l];
    return v;
  }
  static float tree_sum(const V& v) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; ++l) s8[l] = v.lane[l] + v.lane[l + 8];
    for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
  }
};

}  // namespace

void row_dots_portable(const RowDotsArgs& args) { row_dots<Portable, 2, 2>(args); }
void weighted_rows_portable(const WeightedRowsArgs& args) { weighted_rows<Portable, 2, 1>(args); }

#ifndef CONTACCUM_X86_KERNELS
// Built without the x86 files: their names exist for the dispatch, which
// never chooses them here (the CPU check says no).
void row_dots_avx2(const RowDotsArgs& args) { row_dots_portable(args); }
void row_dots_avx512(const RowDotsArgs& args) { row_dots_portable(args); }
void weighted_rows_avx2(const WeightedRowsArgs& args) { weighted_rows_portable(args); }
void weighted_rows_avx512(const WeightedRowsArgs& args) { weighted_rows_portable(args); }
#endif

}  // namespace contaccum::detail
