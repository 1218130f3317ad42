#include "contaccum/train/trainer.h"

#include "contaccum/core/stopwatch.h"
#include "contaccum/data/batch_loader.h"
#include "contaccum/io/zip_checksums.h"
#include "contaccum/strategy/rng_state.h"
#include "contaccum/train/checkpoint.h"
#include "contaccum/train/finite.h"
#include "contaccum/train/run_directory.h"
#include "contaccum/train/schedule.h"
#include "contaccum/train/stop_signals.h"

#include "trainer_cadence.h"
#include "trainer_state_io.h"
#include "training_log.h"

#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

using detail::step_json;

// What a checkpoint's trainer state records of the run (its format-2 fields,
// compared first for their messages in words). Every option that changes
// results is also in the options' fingerprints, which `Trainer::load` and
// `Strategy::load` compare: a field added to an options table needs no line
// here.
detail::TrainerFields run_fields(const StrategyOptions& s, const TrainerOptions& o, int64_t total_steps) {
  return {{"total_steps", total_steps},
          {"total_batch", s.total_batch()},
          {"micro_batch", s.micro_batch()},
          {"memory_size", s.memory_size()},
          {"hard_negatives", o.hard_negatives()},
          {"gradients", static_cast<int64_t>(s.gradients())},
          {"negatives", static_cast<int64_t>(s.negatives())},
          {"query_bank", s.query_bank()},
          {"passage_bank", s.passage_bank()},
          {"bank_hard_negatives", s.bank_hard_negatives()},
          {"clear_banks_after_step", s.clear_banks_after_step()},
          {"bank_encoder", static_cast<int64_t>(s.bank_encoder())}};
}

// Rank 0's metrics on every rank (exact: JSON numbers round-trip doubles).
RetrievalMetrics broadcast_metrics(Collective& collective, const RetrievalMetrics& mine) {
  std::string text;
  if (collective.rank() == 0) {
    nlohmann::json j = {
        {"queries", mine.queries}, {"names", nlohmann::json::array()}, {"values", nlohmann::json::array()}};
    for (const auto& [name, value] : mine.values) {
      j["names"].push_back(name);
      j["values"].push_back(value);
    }
    text = j.dump();
  }
  broadcast_string(collective, text);
  const auto j = nlohmann::json::parse(text);
  RetrievalMetrics out;
  out.queries = j["queries"].get<int64_t>();
  for (size_t i = 0; i < j["names"].size(); ++i) {
    out.values.emplace_back(j["names"][i].get<std::string>(),
                            j["values"][i].is_null() ? std::nan("") : j["values"][i].get<double>());
  }
  return out;
}

}  // namespace

std::string StepRecord::to_json() const { return step_json(*this).dump(); }

EarlyStopping::EarlyStopping(std::string metric, int64_t patience, double min_delta)
    : metric_(std::move(metric)), patience_(patience), min_delta_(min_delta) {
  TORCH_CHECK(patience >= 1, "EarlyStopping: patience must be >= 1, got ", patience);
}

void EarlyStopping::on_evaluate(TrainerState& state, const RetrievalMetrics& metrics) {
  const double v = metrics.at(metric_);
  if (v > best_ + min_delta_) {
    best_ = v;
    bad_ = 0;
  } else if (++bad_ >= patience_) {
    state.should_stop = true;
  }
}

Trainer::Trainer(DualEncoder model, StrategyOptions strategy, std::shared_ptr<const TrainingSet> train_set,
                 Collator collator, TrainerOptions options)
    : model_(std::move(model)),
      train_set_(std::move(train_set)),
      collator_(std::move(collator)),
      options_(std::move(options)),
      collective_(local_collective()) {
  TORCH_CHECK(train_set_ && !train_set_->empty(), "Trainer: the training set is empty");
  options_.validate();
  TORCH_CHECK(options_.staleness_every() == 0 || (strategy.memory_size() > 0 && strategy.staleness_sample() > 0),
              "TrainerOptions::staleness_every = ", options_.staleness_every(),
              " needs banks and a staleness sample (StrategyOptions::memory_size = ", strategy.memory_size(),
              ", staleness_sample = ", strategy.staleness_sample(), ")");
  strategy_ = std::make_unique<Strategy>(model_, strategy);
  optimizer_ = make_adamw(*model_, options_.optimizer());
  sampler_ = std::make_unique<TrainingSampler>(
      train_set_,
      SamplerOptions(strategy.total_batch()).hard_negatives(options_.hard_negatives()).seed(options_.seed()));
  state_.total_steps =
      options_.max_steps() > 0 ? options_.max_steps() : options_.epochs() * sampler_->batches_per_epoch();
  step_ = make_step();
}

std::unique_ptr<TrainingStep> Trainer::make_step() const {
  return std::make_unique<TrainingStep>(model_, *strategy_, *optimizer_, collective_,
                                        TrainingStepOptions()
                                            .max_grad_norm(options_.max_grad_norm())
                                            .non_finite(options_.non_finite())
                                            .max_consecutive_skips(options_.max_consecutive_skips())
                                            .loss_scaling(options_.loss_scaling())
                                            .loss_scaler(options_.loss_scaler()));
}

Trainer::~Trainer() = default;

const LossScaler* Trainer::loss_scaler() const { return step_->loss_scaler(); }

int64_t Trainer::steps_per_epoch() const { return sampler_->batches_per_epoch(); }

RetrievalMetrics Trainer::evaluate() {
  auto metrics = evaluator_(model_);
  if (collective_->world_size() > 1) metrics = broadcast_metrics(*collective_, metrics);
  for (auto& cb : callbacks_) cb->on_evaluate(state_, metrics);
  const double value = metrics.at(options_.eval_metric());
  if (value > state_.best_metric) {
    state_.best_metric = value;
    state_.best_step = state_.step;
    if (on_new_best_ && is_main_rank()) on_new_best_(model_, state_.step);
  }
  return metrics;
}

std::string Trainer::checkpoint(int64_t step) {
  if (!is_main_rank()) {
    // The other ranks take part in the save's collectives and write nothing.
    torch::serialize::OutputArchive unused;
    save(unused);
    return "";
  }
  CheckpointManager manager((fs::path(options_.output_dir()) / "checkpoints").string(), options_.keep_checkpoints());
  std::string path;
  try {
    path = manager.save(step, [this](torch::serialize::OutputArchive& a) { save(a); });
  } catch (const c10::Error& e) {
    // Older checkpoints are pruned only after a new one is in place.
    const auto intact = manager.latest();
    TORCH_CHECK(false, "checkpoint of step ", step, " not written: ", e.what_without_backtrace(),
                ". The newest intact checkpoint is ", intact ? *intact : std::string("none (this run wrote none yet)"),
                "; once the cause is fixed (free space), continue from it (contaccum train --resume)");
  }
  for (auto& cb : callbacks_) cb->on_checkpoint(state_, path);
  return path;
}

// The trainer's own callbacks for this run of `train`, in the order they
// run after the user's.
std::vector<std::shared_ptr<TrainerCallback>> Trainer::cadence_callbacks(int64_t first_step,
                                                                         RetrievalMetrics& last_eval) {
  const bool main = is_main_rank();
  const bool writes = !options_.output_dir().empty() && main;
  auto progress = std::make_shared<detail::ProgressCallback>(main ? options_.progress() : ProgressMode::Silent,
                                                             state_.total_steps, options_.log_every(), first_step);
  std::vector<std::shared_ptr<TrainerCallback>> out = {progress};
  if (evaluator_) {
    out.push_back(std::make_shared<detail::EvaluationCadence>(options_.eval_every(), [this, progress, &last_eval] {
      progress->on_train_end(state_);  // ends the bar's line before the evaluation logs
      last_eval = evaluate();
    }));
  }
  std::function<BankStaleness()> measure;
  if (main) measure = [this] { return strategy_->measure_staleness(); };
  out.push_back(std::make_shared<detail::MetricsCallback>(
      writes ? (fs::path(options_.output_dir()) / "metrics.jsonl").string() : "", first_step,
      options_.staleness_every(), measure));
  if (!options_.output_dir().empty()) {
    out.push_back(std::make_shared<detail::CheckpointCadence>(options_.checkpoint_every(),
                                                              [this](int64_t step) { checkpoint(step); }));
  }
  return out;
}

// One step: the batch, the learning rate, `TrainingStep`, the state.
StepRecord Trainer::run_step(BatchLoader& loader, const LinearSchedule& schedule, AllocationCounter* allocations,
                             int& signal) {
  const Stopwatch step_watch;
  if (allocations) allocations->reset();
  auto item = loader.next();
  TORCH_CHECK(item.has_value(), "Trainer: the batch loader ran dry at step ", state_.step);
  StepRecord record;
  record.data_seconds = step_watch.seconds();
  record.epoch = item->indices.position.epoch;
  record.lr = schedule.lr(state_.step);
  set_learning_rate(*optimizer_, record.lr);
  auto done = step_->run(item->batch, state_.step + 1);
  record.stats = done.stats;
  record.grad_norms = done.grad_norms;
  record.non_finite = done.non_finite;
  record.loss_scale = done.loss_scale;
  record.overflow = done.overflow;
  record.reduce_seconds = done.reduce_seconds;
  record.reduce_bytes = done.reduce_bytes;
  record.optimizer_seconds = done.optimizer_seconds;
  state_.skipped_steps = step_->skipped_steps();
  state_.consecutive_skips = step_->consecutive_skips();
  state_.step += 1;
  state_.position = item->indices.next;
  state_.epoch = state_.position.epoch;
  record.step = state_.step;
  record.step_seconds = step_watch.seconds();
  if (allocations) record.allocations = allocations->counts();
  record.examples_per_second = static_cast<double>(item->batch.size()) / record.step_seconds;
  // A stop signal ends the run after this step on every rank alike (one
  // process: one that came while the step ran counts too).
  signal = collective_->world_size() == 1 && done.stop_signal == 0 ? stop_signal() : done.stop_signal;
  return record;
}

TrainResult Trainer::train() {
  const Stopwatch run_watch;
  const int64_t first_step = state_.step;
  std::optional<RunDirectoryLock> lock;
  if (!options_.output_dir().empty() && is_main_rank()) {
    lock.emplace(options_.output_dir());
    if (!loaded_) check_fresh_directory();
  }
  TrainResult result;
  const auto cadence = cadence_callbacks(first_step, result.last_eval);
  // evaluate() and checkpoint() tell every callback, the trainer's too.
  const auto installed = callbacks_.size();
  callbacks_.insert(callbacks_.end(), cadence.begin(), cadence.end());
  struct Uninstall {
    std::vector<std::shared_ptr<TrainerCallback>>& list;
    size_t size;
    ~Uninstall() { list.resize(size); }
  } uninstall{callbacks_, installed};

  LinearSchedule schedule(LinearScheduleOptions(options_.optimizer().lr(), state_.total_steps)
                              .warmup_steps(options_.warmup_steps())
                              .final_lr_ratio(options_.final_lr_ratio()));
  for (auto& cb : callbacks_) cb->on_train_begin(state_);
  sampler_->seek(state_.position);
  BatchLoader loader(*sampler_, collator_, static_cast<size_t>(options_.prefetch()), state_.total_steps - state_.step);
  std::optional<AllocationCounter> allocations;
  if (options_.count_allocations()) allocations.emplace();
  while (state_.step < state_.total_steps && !state_.should_stop) {
    int signal = 0;
    const auto record = run_step(loader, schedule, allocations ? &*allocations : nullptr, signal);
    state_.stop_signal = signal;
    for (auto& cb : callbacks_) cb->on_step_end(state_, record);
    if (signal != 0) {
      state_.should_stop = true;
      result.stop_signal = signal;
    }
  }
  for (auto& cb : callbacks_) cb->on_train_end(state_);
  result.steps = state_.step - first_step;
  result.seconds = run_watch.seconds();
  result.best_metric = state_.best_metric;
  result.best_step = state_.best_step;
  result.stopped_early = state_.should_stop && state_.step < state_.total_steps;
  return result;
}

void Trainer::set_collective(std::shared_ptr<Collective> collective) {
  TORCH_CHECK(collective != nullptr, "Trainer::set_collective: the collective must not be null");
  TORCH_CHECK(state_.step == 0 && !loaded_, "Trainer::set_collective: call it before load and train");
  strategy_->set_collective(collective);
  collective_ = std::move(collective);
  step_ = make_step();
  synchronize_replicas(model_, *collective_, options_.seed());
}

bool Trainer::is_main_rank() const { return collective_->rank() == 0; }

void Trainer::check_fresh_directory() const {
  CheckpointManager manager((fs::path(options_.output_dir()) / "checkpoints").string(), options_.keep_checkpoints());
  const auto existing = manager.list();
  TORCH_CHECK(existing.empty(), "Trainer: ", options_.output_dir(), " already holds checkpoints of another run (",
              existing.back(),
              "); resume it (Trainer::resume_latest, `contaccum train --resume`), or train into an empty directory");
}

void Trainer::save(torch::serialize::OutputArchive& archive) const {
  // Nothing non-finite is ever written (the steps are checked; this also
  // catches an optimizer moment that overflowed from finite gradients).
  auto bad = first_non_finite(*model_, "model parameter ");
  if (bad.empty()) bad = first_non_finite(*optimizer_);
  if (bad.empty() && !all_finite(strategy_->query_bank().view())) bad = "the query bank";
  if (bad.empty() && !all_finite(strategy_->passage_bank().view())) bad = "the passage bank";
  if (const auto* ema = strategy_->momentum_encoder(); bad.empty() && ema != nullptr) {
    for (const auto& w : ema->weights()) {
      if (!all_finite(w)) bad = "the momentum bank encoder";
    }
  }
  TORCH_CHECK(bad.empty(), "Trainer: refusing to write a checkpoint at step ", state_.step, ": ", bad,
              " holds a NaN or an infinity");
  torch::serialize::OutputArchive model, optimizer, strategy, rng;
  model_->save(model);
  optimizer_->save(optimizer);
  strategy_->save(strategy);
  RngState::capture().save(rng);
  if (collective_->world_size() > 1) {
    // [world, bytes]: row r is rank r's generators.
    archive.write("rng_ranks", collective_->all_gather(RngState::capture().to_bytes().unsqueeze(0)));
  }
  archive.write("model", model);
  archive.write("optimizer", optimizer);
  archive.write("strategy", strategy);
  archive.write("rng", rng);
  archive.write("trainer_options", fingerprint_tensor(options_.fingerprint()));
  if (const auto* scaler = step_->loss_scaler()) {
    torch::serialize::OutputArchive scaler_archive;
    scaler->save(scaler_archive);
    archive.write("loss_scaler", scaler_archive);
  }
  auto fields = run_fields(strategy_->options(), options_, state_.total_steps);
  fields["step"] = state_.step;
  fields["epoch"] = state_.position.epoch;
  fields["batch"] = state_.position.batch;
  fields["best_step"] = state_.best_step;
  fields["skipped_steps"] = state_.skipped_steps;
  fields["consecutive_skips"] = state_.consecutive_skips;
  fields["world_size"] = collective_->world_size();
  detail::write_trainer_state(archive, fields, state_.best_metric);
}

void Trainer::load(torch::serialize::InputArchive& archive) {
  detail::SavedTrainerState saved;
  try {
    saved = detail::read_trainer_state(archive);
    detail::check_same_run(saved, run_fields(strategy_->options(), options_, state_.total_steps));
    // Checkpoints written before options had fingerprints hold none.
    if (torch::Tensor options; archive.try_read("trainer_options", options)) {
      check_same_fingerprint(fingerprint_from_tensor(options), options_.fingerprint(), "TrainerOptions");
    }
    const auto world = saved.fields.count("world_size") ? saved.fields.at("world_size") : 1;
    TORCH_CHECK(world == collective_->world_size(), "the checkpoint was written by a run on ", world,
                " rank(s), this one has ", collective_->world_size(),
                "; resuming on another number of ranks is not supported (each rank's random stream is in the "
                "checkpoint): resume with --nproc-per-node ",
                world);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Trainer::load: ", e.what_without_backtrace());
  }
  const auto& field = saved.fields;
  torch::serialize::InputArchive model, optimizer, strategy, rng;
  archive.read("model", model);
  archive.read("optimizer", optimizer);
  archive.read("strategy", strategy);
  archive.read("rng", rng);
  load_module_checked(*model_, model, "checkpoint");
  optimizer_->load(optimizer);
  strategy_->load(strategy);
  if (collective_->world_size() > 1) {
    torch::Tensor ranks;
    TORCH_CHECK(archive.try_read("rng_ranks", ranks),
                "Trainer::load: the checkpoint lacks the ranks' generator states");
    RngState::from_bytes(ranks[collective_->rank()].contiguous()).restore();
  } else {
    RngState::load(rng).restore();
  }
  state_.step = field.at("step");
  state_.position = SamplerPosition{field.at("epoch"), field.at("batch")};
  state_.epoch = state_.position.epoch;
  state_.best_step = field.at("best_step");
  state_.best_metric = saved.best_metric;
  state_.should_stop = false;
  state_.skipped_steps = field.at("skipped_steps");
  state_.consecutive_skips = field.at("consecutive_skips");
  step_->set_skip_counts(state_.skipped_steps, state_.consecutive_skips);
  if (auto* scaler = step_->loss_scaler()) {
    torch::serialize::InputArchive scaler_archive;
    TORCH_CHECK(archive.try_read("loss_scaler", scaler_archive),
                "Trainer::load: the checkpoint has no loss scaler state (it was written by a run that did not scale "
                "its loss)");
    scaler->load(scaler_archive);
  }
  loaded_ = true;
}

namespace {
// Reads a checkpoint file after checking every record's CRC-32.
void read_checkpoint(const std::string& path, torch::serialize::InputArchive& archive, const torch::Device& device) {
  TORCH_CHECK(fs::exists(path), "no file ", path);
  verify_zip_checksums(path);
  try {
    archive.load_from(path, device);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "cannot read ", path, ": ", e.what_without_backtrace());
  }
}
}  // namespace

void Trainer::load_checkpoint(const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    read_checkpoint(path, archive, model_->device());
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Trainer::load_checkpoint: ", e.what_without_backtrace());
  }
  try {
    load(archive);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Trainer::load_checkpoint: ", path, ": ", e.what_without_backtrace());
  }
}

bool Trainer::resume_latest() {
  TORCH_CHECK(!options_.output_dir().empty(), "Trainer::resume_latest: TrainerOptions::output_dir is empty");
  // Rank 0 owns the directory; the others only read the checkpoint.
  std::optional<RunDirectoryLock> lock;
  if (is_main_rank()) lock.emplace(options_.output_dir());
  const auto directory = (fs::path(options_.output_dir()) / "checkpoints").string();
  if (const auto removed = is_main_rank() ? remove_stale_temporaries(options_.output_dir()) : 0; removed > 0) {
    spdlog::warn("removed {} temporary file(s) that an interrupted write left in {}", removed, options_.output_dir());
  }
  const auto all = CheckpointManager(directory, options_.keep_checkpoints()).list();
  if (all.empty()) return false;
  std::vector<std::string> damaged;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    torch::serialize::InputArchive archive;
    try {
      read_checkpoint(*it, archive, model_->device());
    } catch (const c10::Error& e) {
      damaged.push_back(e.what_without_backtrace());
      spdlog::warn("checkpoint {} is damaged, trying an older one: {}", *it, damaged.back());
      continue;
    }
    if (!damaged.empty()) spdlog::warn("resuming from {}, the newest valid checkpoint", *it);
    try {
      load(archive);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "Trainer::resume_latest: ", *it, ": ", e.what_without_backtrace());
    }
    return true;
  }
  std::string reasons;
  for (const auto& d : damaged) reasons += "\n  " + d;
  TORCH_CHECK(false, "Trainer::resume_latest: every checkpoint in ", directory, " is damaged:", reasons,
              "\nMove them away to start the run again from scratch");
  return false;
}

}  // namespace contaccum
