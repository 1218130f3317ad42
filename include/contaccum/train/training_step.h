#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/data/training_batch.h"
#include "contaccum/distributed/collective.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/model/gradient_norms.h"
#include "contaccum/strategy/strategy.h"
#include "contaccum/train/loss_scaler.h"

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace contaccum {

/// What a training step does when its loss or gradient norm is not finite.
/// Either way nothing of that step is applied: not to the weights, not to
/// the optimizer state, not to the banks.
enum class NonFinitePolicy {
  /// Stop with an error naming the step and what was not finite.
  Error,
  /// Throw the step's gradients away, undo its bank writes, count it and go
  /// on; stop when `max_consecutive_skips` steps in a row are skipped.
  Skip,
};

/// `error`, `skip`.
template <>
const std::vector<std::pair<NonFinitePolicy, std::string>>& enum_names<NonFinitePolicy>();

/// Options of `TrainingStep`.
struct TrainingStepOptions {
  /// Gradients are scaled so that their norm (summed in float64 over both
  /// towers) is at most this, as `torch::nn::utils::clip_grad_norm_` does;
  /// 0 disables clipping. Must be >= 0. Default: 2.0.
  TORCH_ARG(double, max_grad_norm) = 2.0;
  /// Default: `NonFinitePolicy::Error`.
  TORCH_ARG(NonFinitePolicy, non_finite) = NonFinitePolicy::Error;
  /// With `NonFinitePolicy::Skip`: this many skipped steps in a row throw.
  /// Must be >= 1. Default: 10.
  TORCH_ARG(int64_t, max_consecutive_skips) = 10;
  /// Scale the loss dynamically (`LossScaler`) whatever the strategy's
  /// precision; with `Precision::Fp16` it always is. Default: false.
  TORCH_ARG(bool, loss_scaling) = false;
  /// The scaler's settings (`loss_scaler.<name>` in the table).
  TORCH_ARG(LossScalerOptions, loss_scaler) = {};

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<TrainingStepOptions>& fields();
  /// Throws, naming the option and its value, when one is out of range.
  void validate() const;
};

/// What one `TrainingStep::run` did.
struct TrainingStepResult {
  /// Loss, negatives, bank fill, encode / loss / gather time.
  StepStats stats;
  /// Per tower and overall (float64), after the all-reduce, before clipping.
  GradientNorms grad_norms;
  /// What was not finite when the step was skipped; "" when it was applied.
  std::string non_finite;
  /// With a loss scaler: the scale this step's loss was multiplied by, and
  /// whether its scaled gradients overflowed (the step was then skipped and
  /// the scale backed off: an expected event, not `non_finite`). 0 / false
  /// without one.
  double loss_scale = 0.0;
  bool overflow = false;
  /// Seconds summing the gradients over the ranks (0 in one process), and
  /// clipping plus the optimizer step.
  double reduce_seconds = 0.0;
  double optimizer_seconds = 0.0;
  /// Bytes this rank passed to the all-reduce (`CollectiveTraffic`; with
  /// `DistributedOptions::sparse_rows` the rows sent and their flags); 0 in
  /// one process.
  int64_t reduce_bytes = 0;
  /// The stop signal (`stop_signals.h`) every rank agreed to end with after
  /// this step (each rank's own if it got one, else the first another got);
  /// 0: none. Agreed in the gradient all-reduce, no extra collective.
  int stop_signal = 0;
};

/// One correct optimizer step, for any `torch::optim::Optimizer` and any
/// learning-rate policy the caller applies before `run`: zero the gradients
/// → `Strategy::compute_gradients` → sum the gradients over the ranks (one
/// bucketed all-reduce, which also agrees on stop signals) → float64
/// gradient norms (first unscaled, and a step whose scaled gradients
/// overflowed skipped, with a `LossScaler`) → the non-finite check
/// (nothing applied when it fails:
/// gradients zeroed, the step's bank writes undone) → clipping → the
/// optimizer step → the momentum bank encoder's update. `Trainer` runs its
/// steps through it; a hand-written loop does too:
/// ```
/// Strategy strategy(model, StrategyOptions::contaccum(128, 32, 1024));
/// auto optimizer = make_adamw(*model, AdamWSetup().lr(2e-5));
/// TrainingStep step(model, strategy, *optimizer);
/// for (int64_t s = 1; s <= steps; ++s) {
///   set_learning_rate(*optimizer, my_schedule(s));
///   auto result = step.run(next_batch(), s);
/// }
/// ```
/// Several processes: pass their collective (the strategy must have it too,
/// `Strategy::set_collective`) and call `synchronize_replicas` once first.
class TrainingStep {
 public:
  /// `strategy` and `optimizer` must outlive the step; the optimizer must
  /// hold `model`'s parameters.
  TrainingStep(DualEncoder model, Strategy& strategy, torch::optim::Optimizer& optimizer,
               std::shared_ptr<Collective> collective = local_collective(), TrainingStepOptions options = {});

  /// Runs step number `step` (1-based; it names the step in errors) on
  /// `batch`. Throws with `NonFinitePolicy::Error` on a step that is not
  /// finite, and with `Skip` when `max_consecutive_skips` in a row were.
  TrainingStepResult run(const TrainingBatch& batch, int64_t step);

  /// Steps skipped as not finite, in all and in a row up to now; a resumed
  /// run sets them back from its checkpoint.
  int64_t skipped_steps() const { return skipped_steps_; }
  int64_t consecutive_skips() const { return consecutive_skips_; }
  void set_skip_counts(int64_t skipped, int64_t consecutive);

  const TrainingStepOptions& options() const { return options_; }
  /// The loss scaler (null when the loss is not scaled), e.g. to save and
  /// load its state with a checkpoint.
  LossScaler* loss_scaler() { return scaler_ ? &*scaler_ : nullptr; }
  const LossScaler* loss_scaler() const { return scaler_ ? &*scaler_ : nullptr; }

 private:
  // With a loss scaler: unscales the gradients; on an overflow applies
  // nothing, backs the scale off and returns true.
  bool skip_overflow(TrainingStepResult& result);

  // Sums the gradients over the ranks, agreeing on a stop signal in the same
  // all-reduce; returns the agreed signal.
  int reduce_gradients(TrainingStepResult& result);

  DualEncoder model_;
  Strategy& strategy_;
  torch::optim::Optimizer& optimizer_;
  std::shared_ptr<Collective> collective_;
  TrainingStepOptions options_;
  int64_t skipped_steps_ = 0, consecutive_skips_ = 0;
  std::optional<LossScaler> scaler_;
};

/// Makes the ranks of `collective` start as one data-parallel run: rank 0's
/// parameters and buffers are broadcast to every rank, and torch's default
/// CPU generator is seeded per rank from `seed` and the rank (dropout masks
/// differ across ranks and are the same on every run). Every rank calls it
/// once, before its first step; nothing happens at world size 1.
void synchronize_replicas(DualEncoder& model, Collective& collective, uint64_t seed);

}  // namespace contaccum
