// The short products in portable C++ for CPUs without AVX2 and FMA: each
// lane's multiply-add is std::fma (rounded once, as the vector instructions
// round), so the results are the vector kernels' bit for bit.

#include <cmath>
#include <cstring>

#include "short_products_kernels.h"
#include "softmax_tile_kernels.h"

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
  template <class F>
  static V each(const V& a, const V& b, F f) {
    V v;
    for (int l = 0; l < 16; ++l) v.lane[l] = f(a.lane[l], b.lane[l]);
    return v;
  }
  static V sub(const V& a, const V& b) {
    return each(a, b, [](float x, float y) { return x - y; });
  }
  static V mul(const V& a, const V& b) {
    return each(a, b, [](float x, float y) { return x * y; });
  }
  static V div(const V& a, const V& b) {
    return each(a, b, [](float x, float y) { return x / y; });
  }
  static V exponent(const V& a) {
    return each(a, a, [](float x, float) {
      uint32_t bits;
      std::memcpy(&bits, &x, sizeof bits);
      return static_cast<float>(static_cast<int32_t>(bits >> 23) - 127);
    });
  }
  // The x86 instructions' choices: b when the two compare equal or either is
  // NaN.
  static float max_of(float x, float y) { return x > y ? x : y; }
  static float min_of(float x, float y) { return x < y ? x : y; }
  static V max(const V& a, const V& b) { return each(a, b, max_of); }
  static V min(const V& a, const V& b) { return each(a, b, min_of); }
  static V round(const V& a) {
    return each(a, a, [](float x, float) { return std::nearbyint(x); });
  }
  static V scale_pow2(const V& y, const V& n) {
    return each(y, n, [](float value, float power) {
      if (power != power) return value;  // NaN: so is value
      const auto k = static_cast<int32_t>(power), k1 = k >> 1, k2 = k - k1;
      return value * pow2(k1) * pow2(k2);
    });
  }
  static float pow2(int32_t k) {
    const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  static V load_first_or(const float* p, int n, float fill) {
    V v = broadcast(fill);
    std::memcpy(v.lane, p, sizeof(float) * static_cast<size_t>(n));
    return v;
  }
  static float tree_max(const V& v) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; ++l) s8[l] = max_of(v.lane[l], v.lane[l + 8]);
    for (int l = 0; l < 4; ++l) s4[l] = max_of(s8[l], s8[l + 4]);
    return max_of(max_of(s4[0], s4[2]), max_of(s4[1], s4[3]));
  }
  static float lane(const V& v, int l) { return v.lane[l]; }
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
void fold_logsumexp_portable(const LogSumExpTileArgs& args) { fold_logsumexp<Portable>(args); }
void softmax_weights_portable(const SoftmaxTileArgs& args) { softmax_weights<Portable>(args); }
void exp_floats_portable(const float* x, float* out, int64_t n) { exp_floats<Portable>(x, out, n); }
void add_log_floats_portable(const float* base, const float* x, float* out, int64_t n) {
  add_log_floats<Portable>(base, x, out, n);
}
void logaddexp_floats_portable(const float* a, const float* b, float* out, int64_t n) {
  logaddexp_floats<Portable>(a, b, out, n);
}

#ifndef CONTACCUM_X86_KERNELS
// Built without the x86 files: their names exist for the dispatch, which
// never chooses them here (the CPU check says no).
void row_dots_avx2(const RowDotsArgs& args) { row_dots_portable(args); }
void row_dots_avx512(const RowDotsArgs& args) { row_dots_portable(args); }
void weighted_rows_avx2(const WeightedRowsArgs& args) { weighted_rows_portable(args); }
void weighted_rows_avx512(const WeightedRowsArgs& args) { weighted_rows_portable(args); }
void fold_logsumexp_avx2(const LogSumExpTileArgs& args) { fold_logsumexp_portable(args); }
void fold_logsumexp_avx512(const LogSumExpTileArgs& args) { fold_logsumexp_portable(args); }
void softmax_weights_avx2(const SoftmaxTileArgs& args) { softmax_weights_portable(args); }
void softmax_weights_avx512(const SoftmaxTileArgs& args) { softmax_weights_portable(args); }
void exp_floats_avx2(const float* x, float* out, int64_t n) { exp_floats_portable(x, out, n); }
void exp_floats_avx512(const float* x, float* out, int64_t n) { exp_floats_portable(x, out, n); }
void add_log_floats_avx2(const float* base, const float* x, float* out, int64_t n) {
  add_log_floats_portable(base, x, out, n);
}
void add_log_floats_avx512(const float* base, const float* x, float* out, int64_t n) {
  add_log_floats_portable(base, x, out, n);
}
void logaddexp_floats_avx2(const float* a, const float* b, float* out, int64_t n) {
  logaddexp_floats_portable(a, b, out, n);
}
void logaddexp_floats_avx512(const float* a, const float* b, float* out, int64_t n) {
  logaddexp_floats_portable(a, b, out, n);
}
#endif

}  // namespace contaccum::detail
