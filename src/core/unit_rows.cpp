#include "contaccum/core/unit_rows.h"

#include "contaccum/core/helper_thread.h"

#include <torch/autograd.h>

namespace contaccum {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// grad_x for rows [begin, end) of [rows, d] contiguous x, g and grad_x: y =
// x / divisor element by element (the forward pass's division, so the same
// bits), the dot product y . g in double over four partial sums combined in a
// fixed order (a row's sum does not depend on the threads), then each
// element. Compiled with -ffp-contract=off (CMakeLists.txt): no fused
// multiply-add on any CPU, so the same bits everywhere.
template <typename T>
void unit_rows_backward_rows(T* grad_x, const T* x, const T* g, const T* length, const T* divisor, int64_t d,
                             int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * d;
    const T* gr = g + r * d;
    T* out = grad_x + r * d;
    const T scale = divisor[r];
    if (!(length[r] >= static_cast<T>(kUnitRowsMinNorm))) {
      for (int64_t k = 0; k < d; ++k) out[k] = gr[k] / scale;
      continue;
    }
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t k = 0;
    for (; k + 4 <= d; k += 4)
      for (int l = 0; l < 4; ++l) part[l] += static_cast<double>(xr[k + l] / scale) * static_cast<double>(gr[k + l]);
    for (; k < d; ++k) part[0] += static_cast<double>(xr[k] / scale) * static_cast<double>(gr[k]);
    const T along = static_cast<T>((part[0] + part[1]) + (part[2] + part[3]));
    for (k = 0; k < d; ++k) out[k] = (gr[k] - (xr[k] / scale) * along) / scale;
  }
}

class UnitRows : public torch::autograd::Function<UnitRows> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    const auto length = x.norm(2, {-1}, /*keepdim=*/true);
    const auto divisor = length.clamp_min(kUnitRowsMinNorm);
    // x, not the output, is kept: a caller may change the output in place.
    ctx->save_for_backward({x, length, divisor});
    return x / divisor;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &length = saved[1], &divisor = saved[2];
    const auto& g = grad_outputs[0];
    if (torch::GradMode::is_enabled()) {
      // A graph of this backward pass (create_graph): LibTorch's operations
      // from x, differentiable in turn.
      const auto again = x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(kUnitRowsMinNorm);
      return {torch::autograd::grad({again}, {x}, {g}, /*retain_graph=*/true, /*create_graph=*/true)[0]};
    }
    const auto type = x.scalar_type();
    bool fused = (type == torch::kFloat || type == torch::kDouble) && x.numel() > 0 && x.is_contiguous();
    for (const auto* t : {&x, &g, &length, &divisor}) fused = fused && t->device().is_cpu() && t->scalar_type() == type;
    fused = fused && length.is_contiguous() && divisor.is_contiguous();
    if (!fused) {
      // LibTorch's operations (other devices, types and layouts).
      const auto y = x / divisor;
      const auto projected = (g - y * (y * g).sum(-1, /*keepdim=*/true)) / divisor;
      return {torch::where(length >= kUnitRowsMinNorm, projected, g / divisor)};
    }
    const int64_t d = x.size(-1), rows = x.numel() / d;
    const auto gc = g.contiguous();
    auto grad_x = torch::empty_like(x, at::MemoryFormat::Contiguous);
    // About 16k elements a piece, so that the helper thread takes a share of
    // a large batch (GradCache's full batch) and a micro-batch stays on one.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, d));
    AT_DISPATCH_FLOATING_TYPES(type, "unit_rows_backward", [&] {
      scalar_t* out = grad_x.data_ptr<scalar_t>();
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* gp = gc.data_ptr<scalar_t>();
      const scalar_t* lp = length.data_ptr<scalar_t>();
      const scalar_t* dp = divisor.data_ptr<scalar_t>();
      share_out_ranges(rows, grain, [&](int64_t begin, int64_t end) {
        unit_rows_backward_rows(out, xp, gp, lp, dp, d, begin, end);
      });
    });
    return {grad_x};
  }
};

}  // namespace

torch::Tensor unit_rows(const torch::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() >= 1, "unit_rows: x must have at least one dimension, got ",
              x.defined() ? x.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(x.is_floating_point(), "unit_rows: x must be floating point, got ", x.scalar_type());
  if (!(torch::GradMode::is_enabled() && x.requires_grad())) {
    return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(kUnitRowsMinNorm);
  }
  return UnitRows::apply(x);
}

}  // namespace contaccum
