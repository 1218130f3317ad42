// The short products for AVX-512 (compiled with -mavx512f -mfma; called only
// when the CPU has them). 16 lanes are one register.

#include <immintrin.h>

#include "short_products_kernels.h"

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

}  // namespace contaccum::detail
