#pragma once
// Internal: the trainer's own callbacks, run after the user's in this order
// at each step's end: progress, evaluation cadence, metrics.jsonl,
// checkpoint cadence. Not installed.

#include "contaccum/core/stopwatch.h"
#include "contaccum/train/trainer.h"

#include "training_log.h"

#include <functional>
#include <optional>
#include <string>

namespace contaccum {
namespace detail {

// Whether the step just done ends an epoch (the next batch starts one).
inline bool epoch_ended(const TrainerState& state) { return state.position.batch == 0; }
inline bool run_ended(const TrainerState& state) { return state.step == state.total_steps; }

// The progress bar or log lines, and each evaluation's metrics.
class ProgressCallback : public TrainerCallback {
 public:
  ProgressCallback(ProgressMode mode, int64_t total_steps, int64_t log_every, int64_t first_step)
      : progress_(mode, total_steps, log_every), shows_(mode != ProgressMode::Silent), first_step_(first_step) {}
  void on_step_end(TrainerState& state, const StepRecord& record) override {
    progress_.update(record, watch_.seconds(), state.step - first_step_);
  }
  void on_evaluate(TrainerState& state, const RetrievalMetrics& metrics) override {
    progress_.finish();
    if (shows_) spdlog::info("step {}: {}", state.step, metrics_json(metrics).dump());
  }
  void on_train_end(TrainerState&) override { progress_.finish(); }

 private:
  Stopwatch watch_;
  Progress progress_;
  bool shows_;
  int64_t first_step_;
};

// Evaluates every `every` steps (0: at each epoch's end), at the last step
// and when a callback stopped the run; not for a stop signal (its grace
// period is for the checkpoint).
class EvaluationCadence : public TrainerCallback {
 public:
  EvaluationCadence(int64_t every, std::function<void()> evaluate) : every_(every), evaluate_(std::move(evaluate)) {}
  void on_step_end(TrainerState& state, const StepRecord&) override {
    const bool due = every_ > 0 ? state.step % every_ == 0 : epoch_ended(state);
    if (due || run_ended(state) || state.should_stop) evaluate_();
  }

 private:
  int64_t every_;
  std::function<void()> evaluate_;
};

// One metrics.jsonl line per step: the step's record, the evaluation of this
// step if there was one, and the bank staleness every `staleness_every`
// steps (measured on rank 0 only: `measure` is empty elsewhere).
class MetricsCallback : public TrainerCallback {
 public:
  MetricsCallback(const std::string& path, int64_t first_step, int64_t staleness_every,
                  std::function<BankStaleness()> measure)
      : log_(path, first_step), staleness_every_(staleness_every), measure_(std::move(measure)) {}
  void on_evaluate(TrainerState&, const RetrievalMetrics& metrics) override { eval_ = metrics; }
  void on_step_end(TrainerState& state, const StepRecord& record) override {
    auto line = step_json(record);
    if (eval_) line["eval"] = metrics_json(*eval_);
    eval_.reset();
    if (staleness_every_ > 0 && state.step % staleness_every_ == 0 && measure_) {
      line["staleness"] = staleness_json(measure_());
    }
    log_.write(line);
  }

 private:
  MetricsLog log_;
  int64_t staleness_every_;
  std::function<BankStaleness()> measure_;
  std::optional<RetrievalMetrics> eval_;
};

// A checkpoint every `every` steps (0: at each epoch's end), at the last
// step and whenever the run stops (a callback or a signal).
class CheckpointCadence : public TrainerCallback {
 public:
  CheckpointCadence(int64_t every, std::function<void(int64_t step)> checkpoint)
      : every_(every), checkpoint_(std::move(checkpoint)) {}
  void on_step_end(TrainerState& state, const StepRecord&) override {
    const bool due = every_ > 0 ? state.step % every_ == 0 : epoch_ended(state);
    if (due || run_ended(state) || state.should_stop || state.stop_signal != 0) checkpoint_(state.step);
  }

 private:
  int64_t every_;
  std::function<void(int64_t)> checkpoint_;
};

}  // namespace detail
}  // namespace contaccum
