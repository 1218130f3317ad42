#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/data/collator.h"
#include "contaccum/distributed/process_group.h"
#include "contaccum/eval/evaluate.h"
#include "contaccum/strategy/strategy.h"
#include "contaccum/train/run_options.h"
#include "contaccum/train/trainer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// Everything `contaccum train` needs: the options of each part of a run,
/// composed, read from a YAML file plus `key=value` overrides. Each key of
/// the file is one field of one member (`fields()` says which: `lr` is
/// `trainer.optimizer().lr()`, `temperature` is `engine.loss().temperature()`);
/// its doc and its rule are written once, in the options struct that owns
/// it. Nested YAML maps spell dotted keys (`data: {corpus: x}` is
/// `data.corpus`). Unknown keys and values of the wrong type or out of range
/// are rejected, naming the key (and the file and line, or the `--set`).
///
/// Adding a setting: a field and its row in its own struct's `fields()`,
/// and, if the config should expose it, one row in `TrainConfig::fields()`
/// (`docs/ARCHITECTURE.md`, "Adding a setting").
struct TrainConfig {
  /// The defaults of `contaccum train` (where they differ from the members'
  /// own: the contaccum preset at total_batch 128, micro_batch 8,
  /// memory_size 1024; lengths 32 / 128).
  TrainConfig();

  /// `data.*`: the files the run reads.
  TrainingDataOptions data;
  /// `strategy`: full_batch, grad_accum, grad_cache, contaccum or
  /// contaccum_grad_cache (`StrategyOptions::from_preset`: it decides
  /// `engine`'s gradients and negatives). Default: contaccum.
  std::string strategy = "contaccum";
  /// The engine's options: `total_batch`, `micro_batch`, `memory_size`, the
  /// bank switches, `bank_encoder`, `momentum`, and the loss (`temperature`,
  /// `tiled_loss`; its similarity is the model's). Read them through `strategy_options()`,
  /// which applies the preset.
  StrategyOptions engine;
  /// `staleness_sample`: banked examples kept for staleness measurements
  /// when `staleness_every` > 0. Default: 256.
  int64_t staleness_sample = 256;
  /// `similarity`, `encoder`, `encoder_options.*` (`shared`, `tied_init`,
  /// then every registered encoder's keys).
  ModelOptions model;
  /// `tokenizer.*`.
  TokenizerOptions tokenizer;
  /// `query_max_length` (default 32), `passage_max_length` (default 128).
  CollatorOptions lengths;
  /// The optimiser (`lr`, `weight_decay`, `fused_adamw`,
  /// `row_sparse_embeddings`), the schedule, steps, seed, hard negatives,
  /// non-finite policy, logging, evaluation and checkpoint cadence.
  TrainerOptions trainer;
  /// `distributed.backend`, `distributed.timeout`.
  DistributedOptions distributed;
  /// `eval_batch_size` (the lengths are `lengths`').
  DenseEvalOptions eval;
  /// `threads`: LibTorch intra-op threads; 0 keeps LibTorch's default.
  /// Default: 0.
  int64_t threads = 0;
  /// `device`: where the model, banks and their arithmetic live: auto, cpu,
  /// cuda (this rank's GPU) or cuda:N (`resolve_device`). Default: "auto".
  std::string device = "auto";

  /// Every key, in `to_yaml` order: its name in the config, and its doc,
  /// rule and accessors, taken from the member that owns it (the encoders'
  /// keys from the registry as it is now).
  static OptionTable<TrainConfig> fields();
  /// Names of every accepted key, in `to_yaml` order.
  static std::vector<std::string> keys();

  /// Reads `path` and applies `overrides` ("key=value", YAML scalars). Throws
  /// `c10::Error` naming the file and key on an unknown key, a wrong type or
  /// an invalid value.
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  /// Parses YAML text; `source` names it in errors.
  static TrainConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {},
                           const std::string& source = "<config>");
  /// Every key with its value, as YAML that `parse` reads back to an equal
  /// config; with `docs`, each line ends with its key's doc as a comment
  /// (`contaccum train --list-keys`).
  std::string to_yaml(bool docs = false) const;
  /// Throws, naming the key and value, when values are out of range (each
  /// field's rule) or inconsistent (the rules between fields, all here).
  void validate() const;

  /// The engine's options: the preset applied to `engine` (and the staleness
  /// sample kept only when `trainer.staleness_every()` > 0).
  StrategyOptions strategy_options() const;
  /// The dev evaluation's options: `eval` with `lengths`' token limits.
  DenseEvalOptions dev_eval_options() const;
};

}  // namespace contaccum
