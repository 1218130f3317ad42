#pragma once

#include "contaccum/core/allocation_counter.h"
#include "contaccum/data/collator.h"
#include "contaccum/data/sampler.h"
#include "contaccum/distributed/collective.h"
#include "contaccum/eval/metrics.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/model/gradient_norms.h"
#include "contaccum/strategy/strategy.h"
#include "contaccum/train/optimizer.h"
#include "contaccum/train/training_step.h"

#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// How the trainer shows progress.
enum class ProgressMode {
  /// A progress bar on a terminal, log lines otherwise.
  Auto,
  /// A redrawn progress bar on stderr.
  Bar,
  /// A log line every `log_every` steps.
  Lines,
  /// Nothing but warnings.
  Silent,
};

/// `auto`, `bar`, `lines`, `silent`.
template <>
const std::vector<std::pair<ProgressMode, std::string>>& enum_names<ProgressMode>();

/// Options of `Trainer`.
struct TrainerOptions {
  /// AdamW and its parameter groups. Default: lr 2e-5, weight decay 0.01 (none
  /// for biases and LayerNorm), betas (0.9, 0.999), eps 1e-8.
  TORCH_ARG(AdamWSetup, optimizer) = {};
  /// Steps of linear warm-up before the linear decay to 0. Default: 0.
  TORCH_ARG(int64_t, warmup_steps) = 0;
  /// Where the decay ends, as a fraction of the peak learning rate, in
  /// [0, 1] (`LinearScheduleOptions::final_lr_ratio`). Default: 0.
  TORCH_ARG(double, final_lr_ratio) = 0.0;
  /// Clip the global gradient norm to this; 0 disables clipping. Must be
  /// >= 0.
  /// Default: 2.0 (the ContAccum code's).
  TORCH_ARG(double, max_grad_norm) = 2.0;
  /// Passes over the training set. Default: 1.
  TORCH_ARG(int64_t, epochs) = 1;
  /// When > 0, stop after this many optimizer steps instead (the schedule
  /// spans them). Default: 0.
  TORCH_ARG(int64_t, max_steps) = 0;
  /// Seed of the sampler (order and negatives). The model's initialisation
  /// and dropout use torch's global generator, seeded by the caller.
  /// Default: 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Hard negatives per example. Default: 1.
  TORCH_ARG(int64_t, hard_negatives) = 1;
  /// Where `metrics.jsonl` and `checkpoints/` go; empty writes nothing.
  /// Default: "".
  TORCH_ARG(std::string, output_dir) = "";
  /// Steps between progress lines (and bar redraws). Default: 20.
  TORCH_ARG(int64_t, log_every) = 20;
  /// Steps between evaluations (with an evaluator); 0 evaluates at the end of
  /// every epoch only. The last step is always evaluated. Default: 0.
  TORCH_ARG(int64_t, eval_every) = 0;
  /// Metric that decides the best model (higher is better). Default: "mrr@10".
  TORCH_ARG(std::string, eval_metric) = "mrr@10";
  /// Steps between checkpoints (with an `output_dir`); 0 saves at the end of
  /// every epoch and at the end. Default: 0.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  /// Checkpoints kept (the newest). Default: 2.
  TORCH_ARG(int64_t, keep_checkpoints) = 2;
  /// Batches tokenized ahead on a background thread. Default: 4.
  TORCH_ARG(int64_t, prefetch) = 4;
  /// Default: `ProgressMode::Auto`.
  TORCH_ARG(ProgressMode, progress) = ProgressMode::Auto;
  /// Default: `NonFinitePolicy::Error`.
  TORCH_ARG(NonFinitePolicy, non_finite) = NonFinitePolicy::Error;
  /// With `NonFinitePolicy::Skip`: this many skipped steps in a row stop the
  /// run with an error. Must be >= 1. Default: 10.
  TORCH_ARG(int64_t, max_consecutive_skips) = 10;
  /// Scale the loss dynamically (`LossScaler`, its state in checkpoints)
  /// whatever the precision; fp16 always does. Default: false.
  TORCH_ARG(bool, loss_scaling) = false;
  /// The loss scaler's settings (`loss_scaler.<name>`), with fp16 or
  /// `loss_scaling`.
  TORCH_ARG(LossScalerOptions, loss_scaler) = {};
  /// Steps between bank staleness measurements (`Strategy::measure_staleness`,
  /// after the step's update, on rank 0), written to `metrics.jsonl` as the
  /// step's `staleness` object; needs `StrategyOptions::staleness_sample`.
  /// 0: never (nothing is kept or measured). Default: 0.
  TORCH_ARG(int64_t, staleness_every) = 0;
  /// Counts the CPU tensor memory each step allocates on the training
  /// thread (`AllocationCounter`, 1 MiB for "large") and writes it to
  /// `metrics.jsonl` as the step's `allocations` object: how many tensors,
  /// their bytes, how many of at least 1 MiB and their bytes, and the peak
  /// held at once. Costs a little per allocation. Default: false.
  TORCH_ARG(bool, count_allocations) = false;

 public:
  /// Every field above, declared once (`OptionTable`; the optimizer's as
  /// `optimizer.<name>`): names, rules and which of them change results.
  static const OptionTable<TrainerOptions>& fields();
  /// The fields that change results, as `option_fingerprint` writes them:
  /// what checkpoints record and `Trainer::load` compares.
  std::string fingerprint() const;
  /// Throws, naming the field and its value, when one is out of range (and
  /// when neither `epochs` nor `max_steps` gives any step).
  void validate() const;
};

/// Where training stands; callbacks may read it and set `should_stop`.
struct TrainerState {
  /// Optimizer steps done.
  int64_t step = 0;
  /// Steps of the whole run.
  int64_t total_steps = 0;
  /// Epoch of the next batch.
  int64_t epoch = 0;
  /// Sampler position of the next batch.
  SamplerPosition position;
  /// Best value of `eval_metric` so far, and its step (-1: none yet).
  double best_metric = -std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
  /// Set to stop after the current step (early stopping).
  bool should_stop = false;
  /// A stop signal (`stop_signals.h`) arrived during the current step: the
  /// run ends after it, with a checkpoint but no extra evaluation. 0: none.
  int stop_signal = 0;
  /// Steps skipped as not finite (`NonFinitePolicy::Skip`), in all and in a
  /// row up to now.
  int64_t skipped_steps = 0;
  int64_t consecutive_skips = 0;
};

/// What one optimizer step did (one line of `metrics.jsonl`).
struct StepRecord {
  int64_t step = 0;   // 1-based
  int64_t epoch = 0;  // of the step's batch
  double lr = 0.0;
  /// Gradient norms per tower and overall (summed in float64), taken once the
  /// step's gradients are final (after the collective's reduction) and
  /// before clipping.
  GradientNorms grad_norms;
  /// What was not finite when the step was skipped ("" for an applied step).
  std::string non_finite;
  /// With a loss scaler (fp16): the step's loss scale, and whether its scaled
  /// gradients overflowed, so that it was skipped (0 / false without one).
  double loss_scale = 0.0;
  bool overflow = false;
  /// Loss, negatives, bank fill, encode/loss time.
  StepStats stats;
  /// Seconds waiting for the batch, in the optimizer (clip + step), and the
  /// whole step.
  double data_seconds = 0.0;
  double optimizer_seconds = 0.0;
  /// Seconds summing the gradients over the ranks, and the bytes this rank
  /// sent for it (0 in one process).
  double reduce_seconds = 0.0;
  int64_t reduce_bytes = 0;
  double step_seconds = 0.0;
  /// Training examples per second of this step.
  double examples_per_second = 0.0;
  /// With `TrainerOptions::count_allocations`: what the step allocated.
  std::optional<AllocationCounts> allocations;
  /// The JSON object written to `metrics.jsonl`.
  std::string to_json() const;
};

/// Hooks into the training loop; override what you need. Runs on the
/// trainer's thread. The trainer's own progress display, evaluation cadence,
/// `metrics.jsonl` and checkpoint cadence are callbacks too, run after the
/// ones added with `add_callback`, in that order.
class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_train_begin(TrainerState& state) {}
  virtual void on_step_end(TrainerState& state, const StepRecord& record) {}
  virtual void on_evaluate(TrainerState& state, const RetrievalMetrics& metrics) {}
  virtual void on_checkpoint(TrainerState& state, const std::string& path) {}
  virtual void on_train_end(TrainerState& state) {}
};

/// Stops training when `metric` has not improved by more than `min_delta` for
/// `patience` evaluations.
class EarlyStopping : public TrainerCallback {
 public:
  EarlyStopping(std::string metric, int64_t patience, double min_delta = 0.0);
  void on_evaluate(TrainerState& state, const RetrievalMetrics& metrics) override;

 private:
  std::string metric_;
  int64_t patience_;
  double min_delta_;
  double best_ = -std::numeric_limits<double>::infinity();
  int64_t bad_ = 0;
};

class BatchLoader;
class LinearSchedule;

/// Evaluates the model (e.g. on a dev split; see `evaluate_dense`).
using Evaluator = std::function<RetrievalMetrics(DualEncoder&)>;

/// What `Trainer::train` did.
struct TrainResult {
  int64_t steps = 0;
  double seconds = 0.0;
  /// The last evaluation (queries = 0 without an evaluator).
  RetrievalMetrics last_eval;
  double best_metric = -std::numeric_limits<double>::infinity();
  int64_t best_step = -1;
  bool stopped_early = false;
  /// The stop signal (`stop_signals.h`) that ended the run after its last
  /// step's checkpoint; 0 when none did.
  int stop_signal = 0;
};

/// The training loop: samples and tokenizes batches ahead on a background
/// thread, computes each step's gradients with the strategy engine, clips,
/// steps AdamW under a linear warm-up/decay schedule, writes one JSON line per
/// step to `output_dir/metrics.jsonl`, evaluates, tracks the best model and
/// saves checkpoints.
///
/// A checkpoint holds the model, the optimizer, the memory banks and their
/// score cache, the random generators and the data position, so
/// `load_checkpoint` + `train` continues exactly: on the CPU, N steps +
/// resume + N steps give bit-identical weights and banks to 2N steps
/// straight, on any CPU (nothing is recomputed on load).
///
/// A step is applied only when its loss and gradient norms are finite (see
/// `NonFinitePolicy`); a checkpoint is written only when every tensor in it
/// is finite, and read only when every record matches its CRC-32.
///
/// With an `output_dir` the trainer holds `RunDirectoryLock` on it while it
/// trains, and refuses to start a new run (step 0, nothing loaded) in a
/// directory that already holds checkpoints of another one.
///
/// ```
/// Trainer trainer(model, StrategyOptions::contaccum(128, 8, 1024), train_set, collator,
///                 TrainerOptions().epochs(10).output_dir("runs/a"));
/// trainer.set_evaluator([&](DualEncoder& m) { return evaluate_dense(m, tokenize, corpus, queries, dev).metrics; });
/// TrainResult result = trainer.train();
/// ```
class Trainer {
 public:
  /// Throws, naming the option, on invalid options or an empty training set.
  Trainer(DualEncoder model, StrategyOptions strategy, std::shared_ptr<const TrainingSet> train_set, Collator collator,
          TrainerOptions options = {});
  ~Trainer();

  void set_evaluator(Evaluator evaluator) { evaluator_ = std::move(evaluator); }
  void add_callback(std::shared_ptr<TrainerCallback> callback) { callbacks_.push_back(std::move(callback)); }
  /// Called with the model whenever `eval_metric` reaches a new best (e.g. to
  /// save it).
  void on_new_best(std::function<void(DualEncoder&, int64_t step)> fn) { on_new_best_ = std::move(fn); }
  /// The processes this trainer runs with (default: `local_collective()`, one
  /// process). Each step's gradients are summed over them with one bucketed
  /// `all_reduce_sum` after the last micro-batch, before the gradient norms,
  /// clipping and the optimizer step; at world size 1 nothing is done.
  ///
  /// With several ranks (call it right after construction, before `load` or
  /// `train`, on every rank with the same options and data): the strategy
  /// splits each batch among the ranks (`Strategy::set_collective`); rank
  /// 0's parameters and buffers are broadcast to all; torch's default CPU
  /// generator is seeded per rank from `seed` and the rank (dropout differs
  /// per rank, as in any data-parallel run); only rank 0 writes
  /// `metrics.jsonl`, checkpoints, and shows progress; the evaluator runs on
  /// every rank (so it may shard its work) and rank 0's metrics are
  /// broadcast so every rank takes the same early-stopping and best-model
  /// decisions; a checkpoint holds every rank's generator state, and one
  /// written by another number of ranks is refused.
  void set_collective(std::shared_ptr<Collective> collective);
  const Collective& collective() const { return *collective_; }

  /// Trains from the current state (step 0, or where `load_checkpoint` left
  /// it) to the end or an early stop.
  TrainResult train();

  /// Writes the whole training state into `archive`. With several ranks it
  /// is a collective (every rank's generator state is gathered): every rank
  /// must call it.
  void save(torch::serialize::OutputArchive& archive) const;
  /// Restores what `save` wrote (named fields with a format version; the
  /// positional format of earlier checkpoints is read too). Throws naming
  /// the field when the checkpoint belongs to a run of another length, batch
  /// or micro-batch size, memory size, number of hard negatives, gradient
  /// mode, negative scope or bank options, or has a newer format.
  void load(torch::serialize::InputArchive& archive);
  /// `load` from a checkpoint file, after checking every record's CRC-32;
  /// throws naming the file when it is damaged or belongs to another run.
  void load_checkpoint(const std::string& path);
  /// Resumes from the newest valid checkpoint in `output_dir/checkpoints`:
  /// a damaged newer one (torn, truncated, a flipped byte) is passed over
  /// with a warning naming it. Returns false when there is no checkpoint;
  /// throws when every one is damaged. Removes temporary files a killed
  /// write left behind.
  bool resume_latest();

  const TrainerState& state() const { return state_; }
  const TrainerOptions& options() const { return options_; }
  Strategy& strategy() { return *strategy_; }
  /// The step's loss scaler (null unless fp16 or `loss_scaling`).
  const LossScaler* loss_scaler() const;
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  DualEncoder& model() { return model_; }
  /// Steps per epoch (batches of `total_batch`, the last partial one dropped).
  int64_t steps_per_epoch() const;

 private:
  RetrievalMetrics evaluate();
  std::string checkpoint(int64_t step);
  std::vector<std::shared_ptr<TrainerCallback>> cadence_callbacks(int64_t first_step, RetrievalMetrics& last_eval);
  StepRecord run_step(BatchLoader& loader, const LinearSchedule& schedule, AllocationCounter* allocations, int& signal);
  bool is_main_rank() const;
  void check_fresh_directory() const;
  // The step object for the current collective and options.
  std::unique_ptr<TrainingStep> make_step() const;

  DualEncoder model_;
  std::unique_ptr<Strategy> strategy_;
  std::shared_ptr<const TrainingSet> train_set_;
  Collator collator_;
  TrainerOptions options_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<TrainingSampler> sampler_;
  TrainerState state_;
  bool loaded_ = false;  // state came from a checkpoint
  Evaluator evaluator_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  std::unique_ptr<TrainingStep> step_;
  std::function<void(DualEncoder&, int64_t)> on_new_best_;
  std::shared_ptr<Collective> collective_;
};

}  // namespace contaccum
