#include "adamw_kernel.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "contaccum/core/cpu_features.h"
#include "contaccum/core/helper_thread.h"

// This file is compiled with -ffp-contract=off: every product and sum below is
// rounded on its own, and the only fused multiply-adds are the explicit
// std::fma, used exactly where the linked LibTorch fuses (measured once per
// process, torch_rounding). Results therefore do not depend on the
// instructions the compiler or the CPU offers; the AVX2 clone only runs the
// same arithmetic faster.

namespace contaccum::detail {
namespace {

template <typename T>
struct Coefficients {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias_correction2, eps, neg_step_size;
};

template <typename T>
Coefficients<T> coefficients(const AdamWStepScalars& s) {
  return {static_cast<T>(s.decay), static_cast<T>(s.beta1),           static_cast<T>(s.one_minus_beta1),
          static_cast<T>(s.beta2), static_cast<T>(s.one_minus_beta2), static_cast<T>(s.sqrt_bias_correction2),
          static_cast<T>(s.eps),   static_cast<T>(s.neg_step_size)};
}

// torch::optim::AdamW's step for one element, operation by operation:
//   p.mul_(1 - lr * wd)                          (when wd != 0)
//   exp_avg.mul_(beta1).add_(g, 1 - beta1)       m*b1 + (1-b1)*g
//   exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)   v*b2 + ((1-b2)*g)*g
//   denom = exp_avg_sq.sqrt() / sqrt(bc2) + eps
//   p.addcdiv_(exp_avg, denom, -lr / bc1)        p + (s*m)/denom
// Whether ATen rounds the product of `add_` and of `addcmul_` before the sum
// (two roundings) or fuses them (one) depends on how LibTorch was built:
// `FusedMean` and `FusedSquare` follow what `torch_rounding()` measured.
template <typename T, bool Decay, bool FusedMean, bool FusedSquare>
__attribute__((always_inline)) inline void update_elements(T* __restrict p, const T* __restrict g, T* __restrict m,
                                                           T* __restrict v, int64_t n, const Coefficients<T>& c) {
  for (int64_t i = 0; i < n; ++i) {
    T param = p[i];
    if (Decay) param = param * c.decay;
    const T grad = g[i];
    const T scaled = m[i] * c.beta1;
    const T mean = FusedMean ? std::fma(c.one_minus_beta1, grad, scaled) : scaled + c.one_minus_beta1 * grad;
    const T decayed = v[i] * c.beta2;
    const T weighted = c.one_minus_beta2 * grad;
    const T square = FusedSquare ? std::fma(weighted, grad, decayed) : decayed + weighted * grad;
    const T denom = std::sqrt(square) / c.sqrt_bias_correction2 + c.eps;
    p[i] = param + (c.neg_step_size * mean) / denom;
    m[i] = mean;
    v[i] = square;
  }
}

template <typename T, bool... Flags>
__attribute__((target("avx2,fma"))) void update_elements_avx2(T* p, const T* g, T* m, T* v, int64_t n,
                                                              const Coefficients<T>& c) {
  update_elements<T, Flags...>(p, g, m, v, n, c);
}

template <typename T, bool... Flags>
void update_elements_baseline(T* p, const T* g, T* m, T* v, int64_t n, const Coefficients<T>& c) {
  update_elements<T, Flags...>(p, g, m, v, n, c);
}

bool has_avx2_fma() { return cpu_features().avx2 && cpu_features().fma; }

template <typename T, bool... Flags>
void update_span_with(T* p, const T* g, T* m, T* v, int64_t n, const Coefficients<T>& c) {
  if (has_avx2_fma()) {
    update_elements_avx2<T, Flags...>(p, g, m, v, n, c);
  } else {
    update_elements_baseline<T, Flags...>(p, g, m, v, n, c);
  }
}

// Turns the three run-time choices into template arguments.
template <typename T, bool... Chosen>
void update_span(T* p, const T* g, T* m, T* v, int64_t n, const Coefficients<T>& c, const bool* flags) {
  if constexpr (sizeof...(Chosen) == 3) {
    update_span_with<T, Chosen...>(p, g, m, v, n, c);
  } else {
    if (flags[0]) {
      update_span<T, Chosen..., true>(p, g, m, v, n, c, flags + 1);
    } else {
      update_span<T, Chosen..., false>(p, g, m, v, n, c, flags + 1);
    }
  }
}

// Whether ATen's `op` on float tensors of type T rounds the product before
// the sum: with self = -(1 + 2u), a = b = 1 + u (u = 2^-12 for float, 2^-27
// for double), a * b = 1 + 2u + u^2 rounds to 1 + 2u, so the two-rounding
// result is 0 and the fused one u^2. Probed both where ATen vectorises
// (element 0 of 64) and in a loop's scalar tail (the last of 67).
template <typename T, typename Op>
bool aten_fuses(Op op) {
  const T u = std::is_same_v<T, float> ? T(1) / T(4096) : T(1) / T(134217728);
  bool vector_fused = false, tail_fused = false;
  for (const int64_t n : {64, 67}) {
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    auto self = at::full({n}, -(T(1) + 2 * u), options);
    const auto factor = at::full({n}, T(1) + u, options);
    op(self, factor);
    const T got = self.template data_ptr<T>()[n == 64 ? 0 : n - 1];
    TORCH_CHECK(got == T(0) || got == u * u, "FusedAdamW: unexpected rounding probe result ", got);
    (n == 64 ? vector_fused : tail_fused) = got != T(0);
  }
  TORCH_CHECK(vector_fused == tail_fused,
              "FusedAdamW: this LibTorch rounds the same operation differently in vector and scalar loops, so "
              "torch::optim::AdamW's own results depend on tensor sizes and threads; use it (fused_adamw: false)");
  return vector_fused;
}

template <typename T>
std::pair<bool, bool> torch_rounding() {
  static const std::pair<bool, bool> measured = [] {
    at::NoGradGuard no_grad;
    const double alpha = std::is_same_v<T, float> ? 1.0 + 1.0 / 4096 : 1.0 + 1.0 / 134217728;
    const bool add = aten_fuses<T>([&](at::Tensor& self, const at::Tensor& f) { self.add_(f, alpha); });
    const bool addcmul = aten_fuses<T>([](at::Tensor& self, const at::Tensor& f) { self.addcmul_(f, f, 1.0); });
    return std::make_pair(add, addcmul);
  }();
  return measured;
}

void check_operands(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                    const at::Tensor& exp_avg_sq) {
  for (const auto* t : {&param, &grad, &exp_avg, &exp_avg_sq}) {
    TORCH_CHECK(t->is_contiguous() && t->device().is_cpu() && t->scalar_type() == param.scalar_type() &&
                    t->sizes() == param.sizes(),
                "FusedAdamW: parameter, gradient and moments must be contiguous CPU tensors of one dtype and shape, "
                "got ",
                t->sizes(), " ", t->scalar_type(), " against ", param.sizes(), " ", param.scalar_type());
  }
  TORCH_CHECK(param.scalar_type() == at::kFloat || param.scalar_type() == at::kDouble,
              "FusedAdamW: parameters must be float32 or float64, got ", param.scalar_type());
}

constexpr int64_t kGrainElements = int64_t{1} << 15;

// Calls fn(p, g, m, v, coefficients, flags) with the operands' data typed.
template <typename Fn>
void with_typed_operands(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                         const at::Tensor& exp_avg_sq, const AdamWStepScalars& scalars, Fn fn) {
  check_operands(param, grad, exp_avg, exp_avg_sq);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const auto [fused_mean, fused_square] = torch_rounding<T>();
    const bool flags[3] = {scalars.apply_decay, fused_mean, fused_square};
    fn(param.data_ptr<T>(), grad.data_ptr<T>(), exp_avg.data_ptr<T>(), exp_avg_sq.data_ptr<T>(),
       coefficients<T>(scalars), flags);
  };
  param.scalar_type() == at::kFloat ? run(float{}) : run(double{});
}

}  // namespace

void adamw_update_dense(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                        const at::Tensor& exp_avg_sq, const AdamWStepScalars& scalars) {
  with_typed_operands(param, grad, exp_avg, exp_avg_sq, scalars,
                      [&](auto* p, const auto* g, auto* m, auto* v, const auto& c, const bool* flags) {
                        share_out_ranges(param.numel(), kGrainElements, [&](int64_t begin, int64_t end) {
                          update_span(p + begin, g + begin, m + begin, v + begin, end - begin, c, flags);
                        });
                      });
}

void adamw_update_rows(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                       const at::Tensor& exp_avg_sq, const at::Tensor& rows, const AdamWStepScalars& scalars) {
  TORCH_CHECK(param.dim() == 2, "FusedAdamW: row-sparse updates need a 2-d parameter, got ", param.sizes());
  TORCH_CHECK(rows.scalar_type() == at::kLong && rows.dim() == 1 && rows.is_contiguous(),
              "FusedAdamW: rows must be a contiguous 1-d int64 tensor");
  const int64_t width = param.size(1), count = rows.numel(), height = param.size(0);
  const int64_t* row = rows.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    TORCH_CHECK(row[i] >= 0 && row[i] < height, "FusedAdamW: row ", row[i], " out of range [0, ", height, ")");
  }
  const int64_t grain_rows = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(width, 1));
  with_typed_operands(param, grad, exp_avg, exp_avg_sq, scalars,
                      [&](auto* p, const auto* g, auto* m, auto* v, const auto& c, const bool* flags) {
                        share_out_ranges(count, grain_rows, [&](int64_t begin, int64_t end) {
                          for (int64_t i = begin; i < end; ++i) {
                            const int64_t at = row[i] * width;
                            update_span(p + at, g + at, m + at, v + at, width, c, flags);
                          }
                        });
                      });
}

at::Tensor rows_with_gradient(const at::Tensor& grad) {
  TORCH_CHECK(grad.dim() == 2 && grad.is_contiguous() && grad.device().is_cpu(),
              "rows_with_gradient: needs a contiguous 2-d CPU tensor, got ", grad.sizes());
  const int64_t height = grad.size(0), width = grad.size(1);
  std::vector<uint8_t> touched(static_cast<size_t>(height), 0);
  auto scan = [&](auto zero) {
    using T = decltype(zero);
    const T* g = grad.data_ptr<T>();
    share_out_ranges(height, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(width, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t r = begin; r < end; ++r) {
                         const T* row = g + r * width;
                         uint8_t any = 0;
                         for (int64_t j = 0; j < width; ++j) any |= static_cast<uint8_t>(row[j] != T(0));
                         touched[static_cast<size_t>(r)] = any;
                       }
                     });
  };
  TORCH_CHECK(grad.scalar_type() == at::kFloat || grad.scalar_type() == at::kDouble,
              "rows_with_gradient: needs float32 or float64, got ", grad.scalar_type());
  grad.scalar_type() == at::kFloat ? scan(float{}) : scan(double{});
  int64_t count = 0;
  for (const auto t : touched) count += t;
  auto rows = at::empty({count}, grad.options().dtype(at::kLong));
  int64_t* out = rows.data_ptr<int64_t>();
  for (int64_t r = 0; r < height; ++r) {
    if (touched[static_cast<size_t>(r)] != 0) *out++ = r;
  }
  return rows;
}

}  // namespace contaccum::detail
