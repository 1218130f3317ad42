#include "contaccum/testing.h"

#include "contaccum/strategy/rng_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/StringUtil.h>
#include <torch/utils.h>

#include <sstream>

namespace contaccum {
namespace testing {

std::string EncoderCheckReport::message() const {
  std::ostringstream out;
  for (const auto& f : failures) out << f << '\n';
  return out.str();
}

namespace {

// Restores training mode and gradients on every exit path.
class EncoderStateGuard {
 public:
  explicit EncoderStateGuard(EncoderModule& encoder) : encoder_(encoder), training_(encoder.is_training()) {
    for (auto& p : encoder_.parameters()) grads_.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  }
  ~EncoderStateGuard() {
    encoder_.train(training_);
    auto params = encoder_.parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads_[i];
  }

 private:
  EncoderModule& encoder_;
  bool training_;
  std::vector<torch::Tensor> grads_;
};

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.detach().to(torch::kDouble) - b.detach().to(torch::kDouble)).abs().max().item<double>();
}

}  // namespace

EncoderCheckReport check_encoder(EncoderModule& encoder, const EncoderInput& sample,
                                 const EncoderCheckOptions& options) {
  EncoderCheckReport report;
  auto fail = [&report](auto&&... parts) { report.failures.push_back(c10::str(parts...)); };
  EncoderStateGuard guard(encoder);
  const int64_t rows = sample.size();
  const auto params = encoder.parameters();
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();

  // Shape, dtype, device, finiteness; and the gradient check on the same pass.
  encoder.train(true);
  for (auto& p : encoder.parameters()) p.mutable_grad() = torch::Tensor();
  auto out = encoder.forward(sample.to(device));
  if (!out.defined() || out.dim() != 2 || out.size(0) != rows || out.size(1) != encoder.output_dim()) {
    fail("output must be [", rows, ", ", encoder.output_dim(), "], got ",
         out.defined() ? c10::str(out.sizes()) : std::string("an undefined tensor"));
    return report;
  }
  if (!out.is_floating_point()) fail("output must be floating point, got ", out.scalar_type());
  if (out.device() != device) fail("output is on ", out.device(), " but the parameters are on ", device);
  if (out.is_floating_point() && !torch::isfinite(out).all().item<bool>()) fail("output holds inf or NaN");
  if (!report.ok()) return report;

  auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  auto weights = torch::randn(out.sizes(), gen, torch::TensorOptions().dtype(out.scalar_type())).to(device);
  if (out.requires_grad()) {
    (out * weights).sum().backward();
  } else {
    fail("output does not require grad: no parameter would be trained");
  }
  const auto named = encoder.named_parameters();
  for (const auto& kv : named) {
    const auto& p = kv.value();
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) {
      fail("parameter '", kv.key(), "' gets no gradient");
    } else if (p.grad().abs().sum().item<double>() == 0.0) {
      fail("parameter '", kv.key(), "' gets an all-zero gradient");
    } else if (!torch::isfinite(p.grad()).all().item<bool>()) {
      fail("parameter '", kv.key(), "' gets a non-finite gradient");
    }
  }

  torch::NoGradGuard no_grad;
  // GradCache's replay: same generator state -> same output, dropout included.
  const auto state = RngState::capture();
  auto first = encoder.forward(sample.to(device));
  state.restore();
  auto second = encoder.forward(sample.to(device));
  const double replay = max_abs_diff(first, second);
  if (!(replay <= options.tolerance())) {
    fail("two training-mode passes from the same random state differ by ", replay, " (tolerance ", options.tolerance(),
         "): the encoder draws randomness GradCache cannot replay");
  }

  encoder.train(false);
  auto eval_first = encoder.forward(sample.to(device));
  auto eval_second = encoder.forward(sample.to(device));
  const double eval_diff = max_abs_diff(eval_first, eval_second);
  if (!(eval_diff <= options.tolerance())) {
    fail("two eval-mode passes differ by ", eval_diff, " (tolerance ", options.tolerance(), ")");
  }
  return report;
}

}  // namespace testing
}  // namespace contaccum
