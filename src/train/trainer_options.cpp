#include "contaccum/train/trainer.h"

namespace contaccum {

template <>
const std::vector<std::pair<ProgressMode, std::string>>& enum_names<ProgressMode>() {
  static const std::vector<std::pair<ProgressMode, std::string>> names = {{ProgressMode::Auto, "auto"},
                                                                          {ProgressMode::Bar, "bar"},
                                                                          {ProgressMode::Lines, "lines"},
                                                                          {ProgressMode::Silent, "silent"}};
  return names;
}

namespace {

// TrainingStep's field of that name with its rule, for TrainerOptions' own
// copy of it (the trainer passes it on).
OptionField<TrainerOptions> step_field(const std::string& name) {
  using O = TrainerOptions;
  const auto& f = find_option_field(TrainingStepOptions::fields(), name);
  if (name == "max_grad_norm") {
    return option_field<O>(name, f.doc, CONTACCUM_OPTION_ACCESSORS(max_grad_norm), f.rule, f.changes_results);
  }
  if (name == "non_finite") {
    return option_field<O>(name, f.doc, CONTACCUM_OPTION_ACCESSORS(non_finite), f.rule, f.changes_results);
  }
  if (name == "loss_scaling") {
    return option_field<O>(name, f.doc, CONTACCUM_OPTION_ACCESSORS(loss_scaling), f.rule, f.changes_results);
  }
  return option_field<O>(name, f.doc, CONTACCUM_OPTION_ACCESSORS(max_consecutive_skips), f.rule, f.changes_results);
}

OptionTable<TrainerOptions> trainer_fields() {
  using O = TrainerOptions;
  constexpr bool kWatchOnly = false;  // how a run is watched or kept, not what it computes
  OptionTable<O> t = {
      option_field<O>("warmup_steps", "steps of linear warm-up", CONTACCUM_OPTION_ACCESSORS(warmup_steps), at_least(0)),
      option_field<O>("final_lr_ratio", "the learning rate the linear decay ends at, as a fraction of the peak",
                      CONTACCUM_OPTION_ACCESSORS(final_lr_ratio), in_closed_range(0, 1)),
      step_field("max_grad_norm"),
      option_field<O>("epochs", "passes over the training set", CONTACCUM_OPTION_ACCESSORS(epochs), at_least(0)),
      option_field<O>("max_steps", "> 0: this many optimizer steps instead of epochs",
                      CONTACCUM_OPTION_ACCESSORS(max_steps), at_least(0)),
      option_field<O>("seed", "seed of the sampler (order and negatives)", CONTACCUM_OPTION_ACCESSORS(seed),
                      at_least(0)),
      option_field<O>("hard_negatives", "hard negatives per example", CONTACCUM_OPTION_ACCESSORS(hard_negatives),
                      at_least(0)),
      option_field<O>("output_dir", "where metrics.jsonl and checkpoints/ go", CONTACCUM_OPTION_ACCESSORS(output_dir),
                      {}, kWatchOnly),
      option_field<O>("log_every", "steps between progress lines", CONTACCUM_OPTION_ACCESSORS(log_every), at_least(1),
                      kWatchOnly),
      option_field<O>("eval_every", "steps between dev evaluations; 0: end of each epoch",
                      CONTACCUM_OPTION_ACCESSORS(eval_every), at_least(0), kWatchOnly),
      option_field<O>(
          "eval_metric", "the metric that decides the best model", CONTACCUM_OPTION_ACCESSORS(eval_metric),
          one_of({"top@1", "top@5", "top@20", "top@100", "recall@20", "recall@100", "mrr@10", "ndcg@10", "map@100"}),
          kWatchOnly),
      option_field<O>("checkpoint_every", "steps between checkpoints; 0: end of each epoch",
                      CONTACCUM_OPTION_ACCESSORS(checkpoint_every), at_least(0), kWatchOnly),
      option_field<O>("keep_checkpoints", "checkpoints kept (the newest)", CONTACCUM_OPTION_ACCESSORS(keep_checkpoints),
                      at_least(1), kWatchOnly),
      option_field<O>("prefetch", "batches tokenized ahead", CONTACCUM_OPTION_ACCESSORS(prefetch), at_least(1),
                      kWatchOnly),
      option_field<O>("progress", "how progress is shown: auto, bar, lines or silent",
                      CONTACCUM_OPTION_ACCESSORS(progress), {}, kWatchOnly),
      step_field("non_finite"),
      step_field("max_consecutive_skips"),
      step_field("loss_scaling"),
      option_field<O>("staleness_every", "steps between bank staleness measurements; 0: off",
                      CONTACCUM_OPTION_ACCESSORS(staleness_every), at_least(0), kWatchOnly),
      option_field<O>("count_allocations", "write what each step allocates to metrics.jsonl",
                      CONTACCUM_OPTION_ACCESSORS(count_allocations), {}, kWatchOnly),
  };
  append_nested_fields(
      t, "optimizer.", AdamWSetup::fields(), [](const O& o) { return o.optimizer(); },
      [](O& o, const AdamWSetup& setup) { o.optimizer(setup); });
  append_nested_fields(
      t, "loss_scaler.", LossScalerOptions::fields(), [](const O& o) { return o.loss_scaler(); },
      [](O& o, const LossScalerOptions& scaler) { o.loss_scaler(scaler); });
  return t;
}

}  // namespace

const OptionTable<TrainerOptions>& TrainerOptions::fields() {
  static const OptionTable<TrainerOptions> table = trainer_fields();
  return table;
}

std::string TrainerOptions::fingerprint() const { return option_fingerprint(*this, fields()); }

void TrainerOptions::validate() const {
  check_option_fields(*this, fields(), "TrainerOptions");
  // Rules between fields.
  TORCH_CHECK(epochs() >= 1 || max_steps() > 0, "TrainerOptions::epochs must be >= 1 when max_steps is 0, got ",
              epochs());
  optimizer().validate();
}

}  // namespace contaccum
