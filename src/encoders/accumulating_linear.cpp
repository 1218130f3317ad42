#include "accumulating_linear.h"

#include <torch/autograd.h>

namespace contaccum::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The parameter's `.grad`, created as zeros when missing.
torch::Tensor& grad_of(torch::Tensor& parameter) {
  if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
  auto& grad = parameter.mutable_grad();
  TORCH_CHECK(!grad.is_sparse(), "accumulating_linear: a parameter's .grad must be dense");
  return grad;
}

class AccumulatingLinear : public torch::autograd::Function<AccumulatingLinear> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    // The parameters themselves, not saved variables: backward adds into
    // their .grad.
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["bias"] = bias;
    ctx->saved_data["input"] = weight.requires_grad() ? input : torch::Tensor();
    return torch::linear(input, weight, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto weight = ctx->saved_data["weight"].toTensor();
    auto bias = ctx->saved_data["bias"].toTensor();
    const auto input = ctx->saved_data["input"].toTensor();
    // Under autocast the output (and so its gradient) is in the autocast
    // type while the parameters and the saved input are not: the gradients
    // are taken in the parameters' type.
    const auto grad = grad_outputs[0].to(weight.scalar_type());
    torch::NoGradGuard no_grad;
    if (weight.requires_grad()) grad_of(weight).addmm_(grad.t(), input.to(weight.scalar_type()));
    if (bias.defined() && bias.requires_grad()) grad_of(bias).add_(grad.sum(0));
    torch::Tensor input_grad;
    if (ctx->needs_input_grad(0)) input_grad = grad.mm(weight);
    return {input_grad, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor accumulating_linear(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(input.dim() == 2 && weight.dim() == 2 && input.size(1) == weight.size(1),
              "accumulating_linear: input must be [rows, ", weight.size(1), "], got ", input.sizes());
  return AccumulatingLinear::apply(input, weight, bias);
}

}  // namespace contaccum::detail
