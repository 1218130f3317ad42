#include "contaccum/train/training_step.h"

#include "contaccum/core/stopwatch.h"
#include "contaccum/train/optimizer.h"
#include "contaccum/train/stop_signals.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <csignal>
#include <limits>
#include <sstream>

namespace contaccum {
namespace {

std::string number_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out << v;
  return out.str();
}

// What of the step is not finite ("" when all is), in words for the log.
// `square_limit` is the largest gradient norm whose square the parameters'
// dtype holds: beyond it AdamW's second moment overflows to infinity from
// finite gradients.
std::string non_finite_part(const TrainingStepResult& r, double applied_norm, double square_limit) {
  std::string out;
  auto add = [&](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  if (!std::isfinite(r.stats.loss)) add("the loss is " + number_text(r.stats.loss));
  if (!std::isfinite(r.grad_norms.query)) {
    add("the query tower's gradient norm is " + number_text(r.grad_norms.query));
  }
  if (!std::isfinite(r.grad_norms.passage)) {
    add("the passage tower's gradient norm is " + number_text(r.grad_norms.passage));
  }
  if (out.empty() && applied_norm > square_limit) {
    add("the gradient norm " + number_text(applied_norm) + " is finite but its square overflows the parameters' " +
        "dtype (AdamW's second moment would become infinite); clip it with max_grad_norm");
  }
  return out;
}

// torch::nn::utils::clip_grad_norm_'s rule, with the float64 norm of
// `gradient_norms` (a float32 sum overflows where this does not).
void clip_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm) {
  if (max_norm <= 0) return;
  const double coefficient = max_norm / (norm + 1e-6);
  if (coefficient >= 1.0) return;
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(coefficient);
  }
}

double learning_rate(const torch::optim::Optimizer& optimizer) {
  return optimizer.param_groups().empty() ? 0.0 : optimizer.param_groups().front().options().get_lr();
}

}  // namespace

template <>
const std::vector<std::pair<NonFinitePolicy, std::string>>& enum_names<NonFinitePolicy>() {
  static const std::vector<std::pair<NonFinitePolicy, std::string>> names = {{NonFinitePolicy::Error, "error"},
                                                                             {NonFinitePolicy::Skip, "skip"}};
  return names;
}

const OptionTable<TrainingStepOptions>& TrainingStepOptions::fields() {
  using O = TrainingStepOptions;
  // A step that is skipped or stops the run applies nothing: none of these
  // change the numbers of the steps that are applied, except the clipping.
  static const OptionTable<O> table = [] {
    OptionTable<O> t = {
        option_field<O>("max_grad_norm", "clip the global gradient norm to this",
                        CONTACCUM_OPTION_ACCESSORS(max_grad_norm), noted(at_least(0), "(0 disables clipping)")),
        option_field<O>("non_finite", "a step whose loss or gradient norm is not finite: error or skip",
                        CONTACCUM_OPTION_ACCESSORS(non_finite), {}, /*changes_results=*/false),
        option_field<O>("max_consecutive_skips", "skipped steps in a row that stop the run",
                        CONTACCUM_OPTION_ACCESSORS(max_consecutive_skips), at_least(1), /*changes_results=*/false),
        option_field<O>("loss_scaling", "scale the loss dynamically whatever the precision (fp16 always does)",
                        CONTACCUM_OPTION_ACCESSORS(loss_scaling)),
    };
    append_nested_fields(
        t, "loss_scaler.", LossScalerOptions::fields(), [](const O& o) { return o.loss_scaler(); },
        [](O& o, const LossScalerOptions& scaler) { o.loss_scaler(scaler); });
    return t;
  }();
  return table;
}

void TrainingStepOptions::validate() const { check_option_fields(*this, fields(), "TrainingStepOptions"); }

TrainingStep::TrainingStep(DualEncoder model, Strategy& strategy, torch::optim::Optimizer& optimizer,
                           std::shared_ptr<Collective> collective, TrainingStepOptions options)
    : model_(std::move(model)),
      strategy_(strategy),
      optimizer_(optimizer),
      collective_(std::move(collective)),
      options_(options) {
  TORCH_CHECK(collective_ != nullptr, "TrainingStep: the collective must not be null");
  options_.validate();
  if (options_.loss_scaling() || strategy_.options().precision() == Precision::Fp16) {
    scaler_.emplace(options_.loss_scaler());
  }
}

bool TrainingStep::skip_overflow(TrainingStepResult& result) {
  if (!scaler_) return false;
  result.loss_scale = scaler_->scale();
  // Every rank holds the summed gradients, so every rank decides alike.
  result.overflow = scaler_->unscale(model_->parameters());
  if (!result.overflow) return false;
  zero_gradients(optimizer_);
  strategy_.discard_step();
  scaler_->update(/*overflowed=*/true);
  spdlog::info("step skipped: the gradients overflowed at loss scale {}; the scale is now {}", result.loss_scale,
               scaler_->scale());
  return true;
}

void TrainingStep::set_skip_counts(int64_t skipped, int64_t consecutive) {
  TORCH_CHECK(skipped >= 0 && consecutive >= 0 && consecutive <= skipped,
              "TrainingStep::set_skip_counts: need 0 <= consecutive <= skipped, got ", consecutive, " and ", skipped);
  skipped_steps_ = skipped;
  consecutive_skips_ = consecutive;
}

int TrainingStep::reduce_gradients(TrainingStepResult& result) {
  const int mine = stop_signal();
  if (collective_->world_size() == 1) return mine;
  const Stopwatch watch;
  const int64_t bytes_before = collective_->traffic().all_reduce_bytes;
  std::vector<torch::Tensor> grads;
  for (const auto& p : model_->parameters()) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  // With the gradients (the same collective, no second one a step): how many
  // ranks received each stop signal, so that every rank stops after this
  // step, with its own signal if it got one, else the first the others got.
  static constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};
  const auto options = grads.empty() ? model_->parameters().front().options() : grads.back().options();
  auto counts = torch::zeros({3}, options.requires_grad(false));
  for (int i = 0; i < 3; ++i) {
    if (mine == kSignals[i]) counts[i] = 1.0;
  }
  grads.push_back(counts);
  collective_->all_reduce_sum(grads);
  const auto received = counts.to(torch::kCPU, torch::kDouble);
  int agreed = mine;
  for (int i = 0; i < 3 && agreed == 0; ++i) {
    if (received[i].item<double>() > 0.0) agreed = kSignals[i];
  }
  result.reduce_seconds = watch.seconds();
  result.reduce_bytes = collective_->traffic().all_reduce_bytes - bytes_before;
  return agreed;
}

TrainingStepResult TrainingStep::run(const TrainingBatch& batch, int64_t step) {
  TrainingStepResult result;
  // Its seconds include the all-reduce's, as `StepRecord::optimizer_seconds`
  // always has.
  zero_gradients(optimizer_);
  model_->train();
  if (scaler_) strategy_.set_loss_scale(scaler_->scale());
  result.stats = strategy_.compute_gradients(batch);
  const Stopwatch optimizer_watch;
  result.stop_signal = reduce_gradients(result);
  if (skip_overflow(result)) {
    result.optimizer_seconds = optimizer_watch.seconds() - result.reduce_seconds;
    return result;
  }
  result.grad_norms = gradient_norms(model_);
  const double norm = result.grad_norms.total;
  const auto params = model_->parameters();
  const double square_limit = params.front().scalar_type() == torch::kDouble
                                  ? std::sqrt(std::numeric_limits<double>::max())
                                  : std::sqrt(static_cast<double>(std::numeric_limits<float>::max()));
  const double max_norm = options_.max_grad_norm();
  const double applied = max_norm > 0 ? std::min(norm, max_norm) : norm;
  const auto problem = non_finite_part(result, applied, square_limit);
  if (problem.empty()) {
    clip_gradients(params, norm, max_norm);
    optimizer_.step();
    strategy_.update_bank_encoder();
    if (scaler_) scaler_->update(/*overflowed=*/false);
    consecutive_skips_ = 0;
    result.optimizer_seconds = optimizer_watch.seconds();
    return result;
  }
  // Nothing of the step is applied, whatever the policy.
  zero_gradients(optimizer_);
  strategy_.discard_step();
  TORCH_CHECK(options_.non_finite() == NonFinitePolicy::Skip, "Trainer: step ", step, " is not finite: ", problem,
              " (lr ", learning_rate(optimizer_),
              "). Nothing of it was applied: weights, optimizer state and banks are those after step ", step - 1,
              ". Lower the learning rate, raise the temperature, check the data, or set non_finite: skip");
  result.non_finite = problem;
  skipped_steps_ += 1;
  consecutive_skips_ += 1;
  spdlog::warn("step {}: skipped ({}); {} skipped in all, {} in a row", step, problem, skipped_steps_,
               consecutive_skips_);
  TORCH_CHECK(consecutive_skips_ < options_.max_consecutive_skips(), "Trainer: ", consecutive_skips_,
              " steps in a row (to step ", step,
              ") were not finite and skipped (max_consecutive_skips = ", options_.max_consecutive_skips(),
              "); the last: ", problem, ". Lower the learning rate, raise the temperature or check the data");
  result.optimizer_seconds = optimizer_watch.seconds() - result.reduce_seconds;
  return result;
}

void synchronize_replicas(DualEncoder& model, Collective& collective, uint64_t seed) {
  if (collective.world_size() == 1) return;
  {
    // Every rank starts from rank 0's weights, whatever its own init drew.
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) {
      auto data = p.data();
      collective.broadcast(data);
    }
    for (auto& b : model->buffers()) collective.broadcast(b);
  }
  // A stream of its own per rank (dropout), a function of the seed only.
  const uint64_t rank = static_cast<uint64_t>(collective.rank());
  torch::manual_seed(seed ^ (0x9E3779B97F4A7C15ULL * (rank + 1)));
}

}  // namespace contaccum
