// The short products for AVX-512 (compiled with -mavx512f -mfma; called only
// when the CPU has them). 16 lanes are one register.

#include <immintrin.h>

#include "short_products_kernels.h"
#include "softmax_tile_kernels.h"

namespace contaccum::detail {
namespace {

struct Avx512 {
  using V = __m512;
  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static V broadcast(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V exponent(V x) {
    const __m512i biased = _mm512_srli_epi32(_mm512_castps_si512(x), 23);
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(biased, _mm512_set1_epi32(127)));
  }
  static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V scale_pow2(V y, V n) {
    const __m512i k = _mm512_cvtps_epi32(n), k1 = _mm512_srai_epi32(k, 1), k2 = _mm512_sub_epi32(k, k1);
    const __m512i bias = _mm512_set1_epi32(127);
    const V f1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
    const V f2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
    return _mm512_mul_ps(_mm512_mul_ps(y, f1), f2);
  }
  static V load_first_or(const float* p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first(n), p);
  }
  static float tree_max(V v) {
    const __m256 high = _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 s8 = _mm256_max_ps(_mm512_castps512_ps256(v), high);
    const __m128 s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_max_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  }
  static float lane(V v, int l) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    return lanes[l];
  }
  static float tree_sum(V v) {
    const __m256 high = _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), high);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 0x55)));
  }
};

}  // namespace

// 4 x 6 dot products (24 of the 32 registers); 4 rows x 4 vectors of a
// weighted sum (16 accumulators, 4 loads and 4 broadcasts per bank row).
void row_dots_avx512(const RowDotsArgs& args) { row_dots<Avx512, 4, 6>(args); }
void weighted_rows_avx512(const WeightedRowsArgs& args) { weighted_rows<Avx512, 4, 4>(args); }
void fold_logsumexp_avx512(const LogSumExpTileArgs& args) { fold_logsumexp<Avx512>(args); }
void softmax_weights_avx512(const SoftmaxTileArgs& args) { softmax_weights<Avx512>(args); }
void exp_floats_avx512(const float* x, float* out, int64_t n) { exp_floats<Avx512>(x, out, n); }
void add_log_floats_avx512(const float* base, const float* x, float* out, int64_t n) {
  add_log_floats<Avx512>(base, x, out, n);
}
void logaddexp_floats_avx512(const float* a, const float* b, float* out, int64_t n) {
  logaddexp_floats<Avx512>(a, b, out, n);
}

}  // namespace contaccum::detail
