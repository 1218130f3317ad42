#include "contaccum/core/unit_rows.h"

#include "contaccum/core/helper_thread.h"

#include <torch/autograd.h>

namespace contaccum {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// grad_x for rows [begin, end) of [rows, d] contiguous tensors, one row at a
// time: the dot product y . g summed in order (in double), then each element.
template <typename T>
void unit_rows_backward_rows(T* grad_x, const T* y, const T* g, const T* length, const T* divisor, int64_t d,
                             int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* yr = y + r * d;
    const T* gr = g + r * d;
    T* out = grad_x + r * d;
    const T scale = divisor[r];
    if (length[r] >= static_cast<T>(kUnitRowsMinNorm)) {
      double dot = 0.0;
      for (int64_t k = 0; k < d; ++k) dot += static_cast<double>(yr[k]) * static_cast<double>(gr[k]);
      const T along = static_cast<T>(dot);
      for (int64_t k = 0; k < d; ++k) out[k] = (gr[k] - yr[k] * along) / scale;
    } else {
      for (int64_t k = 0; k < d; ++k) out[k] = gr[k] / scale;
    }
  }
}

class UnitRows : public torch::autograd::Function<UnitRows> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    const auto length = x.norm(2, {-1}, /*keepdim=*/true);
    const auto divisor = length.clamp_min(kUnitRowsMinNorm);
    auto y = x / divisor;
    ctx->save_for_backward({x, y, length, divisor});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &y = saved[1], &length = saved[2], &divisor = saved[3];
    const auto& g = grad_outputs[0];
    if (torch::GradMode::is_enabled()) {
      // A graph of this backward pass (create_graph): LibTorch's operations
      // from x, differentiable in turn.
      const auto again = x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(kUnitRowsMinNorm);
      return {torch::autograd::grad({again}, {x}, {g}, /*retain_graph=*/true, /*create_graph=*/true)[0]};
    }
    const auto type = y.scalar_type();
    const bool fused = y.device().is_cpu() && g.device().is_cpu() && g.scalar_type() == type &&
                       (type == torch::kFloat || type == torch::kDouble) && y.is_contiguous() && y.numel() > 0;
    if (!fused) {
      // LibTorch's operations (other devices and types, other layouts).
      const auto projected = (g - y * (y * g).sum(-1, /*keepdim=*/true)) / divisor;
      return {torch::where(length >= kUnitRowsMinNorm, projected, g / divisor)};
    }
    const int64_t d = y.size(-1), rows = y.numel() / d;
    const auto gc = g.contiguous();
    auto grad_x = torch::empty_like(y, at::MemoryFormat::Contiguous);
    // About 16k elements a piece, so that the helper thread takes a share of
    // a large batch (GradCache's full batch) and a micro-batch stays on one.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, d));
    AT_DISPATCH_FLOATING_TYPES(type, "unit_rows_backward", [&] {
      scalar_t* out = grad_x.data_ptr<scalar_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      const scalar_t* gp = gc.data_ptr<scalar_t>();
      const scalar_t* lp = length.data_ptr<scalar_t>();
      const scalar_t* dp = divisor.data_ptr<scalar_t>();
      share_out_ranges(rows, grain, [&](int64_t begin, int64_t end) {
        unit_rows_backward_rows(out, yp, gp, lp, dp, d, begin, end);
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
