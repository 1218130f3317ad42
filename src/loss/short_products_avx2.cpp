// The short products for AVX2 with FMA (compiled with -mavx2 -mfma; called
// only when the CPU has them). 16 lanes are two registers of 8, lanes 0-7
// and 8-15, so every lane's arithmetic is AVX-512's.

#include <immintrin.h>

#include <cstring>

#include "short_products_kernels.h"
#include "softmax_tile_kernels.h"

namespace contaccum::detail {
namespace {

struct Avx2 {
  struct V {
    __m256 low, high;
  };
  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static V load_first(const float* p, int n) {
    alignas(32) float lanes[16] = {};
    std::memcpy(lanes, p, sizeof(float) * static_cast<size_t>(n));
    return load(lanes);
  }
  static void store(float* p, V v) {
    _mm256_storeu_ps(p, v.low);
    _mm256_storeu_ps(p + 8, v.high);
  }
  static void store_first(float* p, V v, int n) {
    alignas(32) float lanes[16];
    store(lanes, v);
    std::memcpy(p, lanes, sizeof(float) * static_cast<size_t>(n));
  }
  static V broadcast(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static V fma(V a, V b, V c) {
    return {_mm256_fmadd_ps(a.low, b.low, c.low), _mm256_fmadd_ps(a.high, b.high, c.high)};
  }
  static V add(V a, V b) { return {_mm256_add_ps(a.low, b.low), _mm256_add_ps(a.high, b.high)}; }
  static V sub(V a, V b) { return {_mm256_sub_ps(a.low, b.low), _mm256_sub_ps(a.high, b.high)}; }
  static V mul(V a, V b) { return {_mm256_mul_ps(a.low, b.low), _mm256_mul_ps(a.high, b.high)}; }
  static V max(V a, V b) { return {_mm256_max_ps(a.low, b.low), _mm256_max_ps(a.high, b.high)}; }
  static V min(V a, V b) { return {_mm256_min_ps(a.low, b.low), _mm256_min_ps(a.high, b.high)}; }
  static V div(V a, V b) { return {_mm256_div_ps(a.low, b.low), _mm256_div_ps(a.high, b.high)}; }
  static __m256 exponent(__m256 x) {
    const __m256i biased = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(biased, _mm256_set1_epi32(127)));
  }
  static V exponent(V x) { return {exponent(x.low), exponent(x.high)}; }
  static V round(V a) {
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    return {_mm256_round_ps(a.low, kNearest), _mm256_round_ps(a.high, kNearest)};
  }
  static __m256 scale_pow2(__m256 y, __m256 n) {
    const __m256i k = _mm256_cvtps_epi32(n), k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
  }
  static V scale_pow2(V y, V n) { return {scale_pow2(y.low, n.low), scale_pow2(y.high, n.high)}; }
  static V load_first_or(const float* p, int n, float fill) {
    alignas(32) float lanes[16];
    for (float& l : lanes) l = fill;
    std::memcpy(lanes, p, sizeof(float) * static_cast<size_t>(n));
    return load(lanes);
  }
  static float tree_max(V v) {
    const __m256 s8 = _mm256_max_ps(v.low, v.high);
    const __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_max_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  }
  static float lane(V v, int l) {
    alignas(32) float lanes[16];
    store(lanes, v);
    return lanes[l];
  }
  static float tree_sum(V v) {
    const __m256 s8 = _mm256_add_ps(v.low, v.high);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  }
};

}  // namespace

// 16 registers: 1 x 6 dot products (12 accumulator registers, the x row's
// vector in 2: six bank rows stay in the first-level cache while the x rows
// pass, so each x vector read from the second level feeds 12 multiply-adds,
// not 4 as with 2 x 2, whose x reads that level's bandwidth could not keep
// up with); 4 rows x 1 vector of a weighted sum (8 accumulator registers)
// over packed bank columns. Measured on an AMD EPYC without AVX-512 (Zen 3)
// with `contaccum_bench_banks --no-steps --memory 1024`: scores 133-138
// GFLOP/s and gradient 112-130, against 102-112 and 78-91 with 2 x 2 and
// the weighted sum unpacked. Packing each bank row's window of 8 vectors in
// one run (rather than one vector of 64 rows at a time) then raised the
// gradient's rate at m = 4,096 (a 16 MiB bank, the product repeated):
// 95-122 against 60-115 GFLOP/s in four alternating pairs (`NO_STEPS=1
// bash bench/banks/before_after.sh`, bench/performance/notes.md), and
// copying each vector into the panels with one load and store instead of a
// call to memcpy raised it at m = 1,024 to 96-129 against 77-87. Windows
// of 4 vectors rather than 8 (a 16 KiB buffer rather than the whole
// first-level cache) then added a few per cent (bench/performance/notes.md).
void row_dots_avx2(const RowDotsArgs& args) { row_dots<Avx2, 1, 6>(args); }
void weighted_rows_avx2(const WeightedRowsArgs& args) { weighted_rows<Avx2, 4, 1, /*Pack=*/true>(args); }
void fold_logsumexp_avx2(const LogSumExpTileArgs& args) { fold_logsumexp<Avx2>(args); }
void softmax_weights_avx2(const SoftmaxTileArgs& args) { softmax_weights<Avx2>(args); }
void exp_floats_avx2(const float* x, float* out, int64_t n) { exp_floats<Avx2>(x, out, n); }
void add_log_floats_avx2(const float* base, const float* x, float* out, int64_t n) {
  add_log_floats<Avx2>(base, x, out, n);
}
void logaddexp_floats_avx2(const float* a, const float* b, float* out, int64_t n) {
  logaddexp_floats<Avx2>(a, b, out, n);
}

}  // namespace contaccum::detail
