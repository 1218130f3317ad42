#pragma once

#include "contaccum/core/precision.h"
#include "contaccum/data/training_batch.h"
#include "contaccum/distributed/collective.h"
#include "contaccum/loss/info_nce.h"
#include "contaccum/memory/bank_score_cache.h"
#include "contaccum/memory/memory_bank.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/model/gradient_norms.h"
#include "contaccum/strategy/bank_staleness.h"
#include "contaccum/strategy/momentum_encoder.h"

#include <torch/arg.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

class RngState;

namespace detail {
class RowShards;
class StalenessSample;
}  // namespace detail

/// How representations get their gradients.
enum class GradientMode {
  /// Encode with autograd and backpropagate through the loss (full batch,
  /// GradAccum, ContAccum).
  Direct,
  /// GradCache: encode without autograd, take the loss gradient with respect
  /// to the representations, then re-encode each micro-batch with autograd,
  /// replaying its random state, and backpropagate that cached gradient.
  Cached,
};

/// "direct", "cached".
template <>
const std::vector<std::pair<GradientMode, std::string>>& enum_names<GradientMode>();

/// Which in-batch negatives a query row sees (banks come on top).
enum class NegativeScope {
  /// Its own micro-batch; one loss per micro-batch, weighted by its share.
  MicroBatch,
  /// The whole total batch; one loss per step.
  TotalBatch,
};

/// "micro_batch", "total_batch".
template <>
const std::vector<std::pair<NegativeScope, std::string>>& enum_names<NegativeScope>();

/// Which weights encode the representations that go into the banks.
enum class BankEncoder {
  /// The towers being trained: a banked row is the current micro-batch's
  /// representation, detached (ContAccum).
  Current,
  /// An exponential moving average of the towers (MoCo's key encoder,
  /// `MomentumEncoder`): each micro-batch is encoded a second time, without
  /// autograd, with the averaged weights and the same dropout masks, and
  /// that goes into the banks. The current micro-batch's rows and in-batch
  /// negatives, and so its gradient path, are those of the current towers.
  Momentum,
};

/// "current", "momentum".
template <>
const std::vector<std::pair<BankEncoder, std::string>>& enum_names<BankEncoder>();

/// Options of `Strategy`: what one optimizer step's gradients are.
///
/// The five named strategies are presets of two independent choices
/// (`gradients` x `negatives`) plus the banks:
///
/// | preset                 | gradients | negatives  | memory_size |
/// |------------------------|-----------|------------|-------------|
/// | `full_batch`           | Direct    | TotalBatch | 0           |
/// | `grad_accum`           | Direct    | MicroBatch | 0           |
/// | `grad_cache`           | Cached    | TotalBatch | 0           |
/// | `contaccum`            | Direct    | MicroBatch | > 0         |
/// | `contaccum_grad_cache` | Cached    | TotalBatch | > 0         |
///
/// With `Direct` + `TotalBatch` the batch is still encoded in chunks of
/// `micro_batch` rows (each keeps its autograd graph, so memory grows with
/// `total_batch`); `full_batch(n)` sets `micro_batch = n`, one chunk.
struct StrategyOptions {
  StrategyOptions(int64_t total_batch, int64_t micro_batch) : total_batch_(total_batch), micro_batch_(micro_batch) {}

  /// Full-batch DPR: one chunk, one loss.
  static StrategyOptions full_batch(int64_t total_batch);
  /// Gradient accumulation over micro-batches.
  static StrategyOptions grad_accum(int64_t total_batch, int64_t micro_batch);
  /// GradCache (Gao et al. 2021): full-batch gradients at micro-batch memory.
  static StrategyOptions grad_cache(int64_t total_batch, int64_t micro_batch);
  /// ContAccum: GradAccum plus dual memory banks of `memory_size` examples.
  static StrategyOptions contaccum(int64_t total_batch, int64_t micro_batch, int64_t memory_size);
  /// ContAccum over GradCache micro-batches: full-batch negatives plus banks
  /// holding earlier steps.
  static StrategyOptions contaccum_grad_cache(int64_t total_batch, int64_t micro_batch, int64_t memory_size);
  /// The preset of that name (`full_batch`, `grad_accum`, `grad_cache`,
  /// `contaccum`, `contaccum_grad_cache`): the one mapping from a strategy's
  /// name to its options, used by the config, the pipeline and the
  /// benchmarks. `micro_batch` is not used by `full_batch`; `memory_size`
  /// only by the bank presets (`preset_has_banks`), the others get 0. Throws
  /// listing the names on an unknown one.
  static StrategyOptions from_preset(const std::string& name, int64_t total_batch, int64_t micro_batch,
                                     int64_t memory_size = 0);
  /// The presets' names, in the order above.
  static const std::vector<std::string>& preset_names();
  /// True for `contaccum` and `contaccum_grad_cache`.
  static bool preset_has_banks(const std::string& name);

  /// Examples per optimizer step (`N_total`). Required, > 0.
  TORCH_ARG(int64_t, total_batch);
  /// Examples per micro-batch (`N_local`); must divide `total_batch`.
  /// Required, > 0.
  TORCH_ARG(int64_t, micro_batch);
  /// Default: `GradientMode::Direct`.
  TORCH_ARG(GradientMode, gradients) = GradientMode::Direct;
  /// Default: `NegativeScope::MicroBatch`.
  TORCH_ARG(NegativeScope, negatives) = NegativeScope::MicroBatch;
  /// Examples each memory bank keeps (`N_memory`); 0 disables the banks.
  /// Default: 0.
  TORCH_ARG(int64_t, memory_size) = 0;
  /// Banked queries become extra (constant) rows. Default: true.
  TORCH_ARG(bool, query_bank) = true;
  /// Banked passages become extra negative columns for every row. When false
  /// only each banked query's own positive is kept, as its target.
  /// Default: true.
  TORCH_ARG(bool, passage_bank) = true;
  /// Bank the hard negatives with the positives. Default: true.
  TORCH_ARG(bool, bank_hard_negatives) = true;
  /// Empty the banks after every step (the paper's "without past encoder"
  /// ablation). Default: false.
  TORCH_ARG(bool, clear_banks_after_step) = false;
  /// Accept a batch smaller than `total_batch` (the last of an epoch), cut
  /// into micro-batches with a smaller last one. Default: false.
  TORCH_ARG(bool, allow_partial_batch) = false;
  /// The loss. Default: dot product, temperature 1.
  TORCH_ARG(InfoNCEOptions, loss) = {};
  /// Where banked representations come from. Default: `BankEncoder::Current`.
  TORCH_ARG(BankEncoder, bank_encoder) = BankEncoder::Current;
  /// The moving average's momentum with `BankEncoder::Momentum`, in [0, 1)
  /// (0: the averaged weights are the current ones). Default: 0.999.
  TORCH_ARG(double, momentum) = 0.999;
  /// Banked examples whose inputs are kept for `Strategy::measure_staleness`
  /// (the examples in that many bank slots spread evenly over the ring; at
  /// most `memory_size`); 0 keeps none. Costs the token tensors of that many
  /// examples, whatever the bank's size. Default: 0.
  TORCH_ARG(int64_t, staleness_sample) = 0;
  /// The towers' compute type: every tower pass (the first, GradCache's
  /// replay, the momentum encoder's, the staleness re-encode) runs under
  /// autocast to it on the model's device, each replay under the autocast
  /// and random state of the pass it repeats; representations are upcast to
  /// the model's parameter type before the loss, so the loss, its
  /// log-sum-exps and the score cache compute at full precision. `Fp32` is no
  /// autocast at all: every exact equality of the spec holds. `Bf16` runs on
  /// the CPU and CUDA, `Fp16` on CUDA only (with a `LossScaler`).
  /// Default: `Precision::Fp32`.
  TORCH_ARG(Precision, precision) = Precision::Fp32;
  /// The type the memory banks store (`Fp32`: the representations' own
  /// type). `Bf16` / `Fp16` halve the banks' memory; the loss and the score
  /// cache read the banked rows upcast to the representations' type.
  /// Default: `Precision::Fp32`.
  TORCH_ARG(Precision, bank_dtype) = Precision::Fp32;
  /// A passage that is one of a query's positives is never its negative: the
  /// loss masks every such column other than the query's target (in-batch
  /// positives, hard negatives, banked passages), and the banked queries'
  /// scores against current and banked passages that are their positives,
  /// by the batch's passage identities (`TrainingBatch::passage_identities`,
  /// `positive_identities`; the banks keep them beside the vectors, in
  /// checkpoints too). With no repeated identity the loss is bit for bit
  /// the unmasked one. False: nothing is masked (the losses of earlier
  /// versions, bit for bit). Default: true.
  TORCH_ARG(bool, mask_false_negatives) = true;
  /// With several ranks, `GradientMode::Direct` and several loss groups a
  /// step (GradAccum, ContAccum; full batch has one), each group's towers
  /// run before the gather of the group before it is waited for, so that a
  /// rank that reaches a gather first encodes on instead of waiting there
  /// for the other ranks. The computation is the same, bit for bit; the
  /// towers keep two groups' activations at once instead of one (set it
  /// false where that memory is not there). Not used with `BankEncoder::Momentum` (its second encoding
  /// swaps the weights in place, which the pending group's graph saved).
  /// Default: true.
  TORCH_ARG(bool, overlap_gather) = true;

 public:
  /// Every field above, declared once (`OptionTable`; the loss's fields as
  /// `loss.<name>`): names, rules and which of them change the gradients.
  static const OptionTable<StrategyOptions>& fields();
  /// The fields that change results, as `option_fingerprint` writes them:
  /// what checkpoints record and `Strategy::load` compares.
  std::string fingerprint() const;
  /// Throws, naming the option and its value, when the options are out of
  /// range or inconsistent.
  void validate() const;
};

/// What one call of `Strategy::compute_gradients` did.
struct StepStats {
  /// The loss whose gradient was accumulated: `sum_k (n_k / N) L_k`.
  double loss = 0.0;
  /// Losses computed (1 with `NegativeScope::TotalBatch`, else `K`).
  int64_t loss_groups = 0;
  /// Encoder chunks (micro-batches) per tower pass.
  int64_t micro_batches = 0;
  /// Negatives a current query row saw, averaged over the step's rows
  /// (masked columns are not negatives).
  double negatives_per_query = 0.0;
  /// Score entries masked as false negatives in the step's losses, by kind
  /// (`mask_false_negatives`).
  MaskedColumns masked;
  /// Examples in the query / passage bank after the step (before clearing).
  int64_t query_bank_size = 0;
  int64_t passage_bank_size = 0;
  /// `size / capacity` of the banks after the step (before clearing).
  double query_bank_fill = 0.0;
  double passage_bank_fill = 0.0;
  /// Wall-clock seconds spent in the towers: their forward passes and every
  /// backward pass (which is dominated by the towers). Measured here, as only
  /// the engine sees where the towers end and the loss begins; gradient norms
  /// are taken after the step's gradients are final (`gradient_norms`).
  double encode_seconds = 0.0;
  /// Wall-clock seconds spent computing the losses and updating the banks.
  double loss_seconds = 0.0;
  /// The part of `loss_seconds` spent updating the banks: enqueueing the
  /// step's rows and the score cache's update (0 without banks).
  double bank_seconds = 0.0;
  /// Wall-clock seconds spent gathering representations from the other
  /// ranks (0 in one process).
  double gather_seconds = 0.0;
};

/// The strategy engine: computes the gradients of one total batch into the
/// model's `.grad` fields, as configured by `StrategyOptions`. It owns the
/// memory banks, which persist across calls.
///
/// Typical step:
/// ```
/// optimizer.zero_grad();
/// StepStats stats = strategy.compute_gradients(batch);
/// GradientNorms norms = gradient_norms(model);  // diagnostics, clipping
/// optimizer.step();
/// strategy.update_bank_encoder();  // with BankEncoder::Momentum
/// ```
class Strategy {
 public:
  Strategy(DualEncoder model, StrategyOptions options);
  ~Strategy();
  Strategy(Strategy&&) noexcept;
  Strategy& operator=(Strategy&&) noexcept;

  /// Accumulates the gradients of `batch` (exactly `total_batch` examples,
  /// or fewer with `allow_partial_batch`) into the model's parameters. Call
  /// `zero_grad` before it unless gradients are meant to add up.
  StepStats compute_gradients(const TrainingBatch& batch);

  /// Multiplies every loss by `scale` before its backward pass (a loss
  /// scaler's, `LossScaler`): the gradients accumulated, and under GradCache
  /// the cached representation gradients, are the scaled loss's. The reported
  /// loss is not scaled. Default: 1 (bit for bit no scaling).
  void set_loss_scale(double scale);
  double loss_scale() const { return loss_scale_; }

  /// The processes this engine runs on (default: `local_collective()`).
  ///
  /// With `W` ranks, `total_batch` is the global batch (every rank passes
  /// the same `TrainingBatch` to `compute_gradients`) and `micro_batch` is
  /// per rank: the batch is cut into global micro-batches of `W x
  /// micro_batch` rows (one of `total_batch` rows for full batch, where
  /// `micro_batch == total_batch`), and rank `r` encodes the `r`-th of `W`
  /// contiguous parts of each. The representations are all-gathered into the
  /// single-process row order (each rank's own rows keep their autograd
  /// graph), every rank computes the same losses and bank writes, and the
  /// gradients each rank accumulates are its rows' share: their sum over the
  /// ranks (the caller's all-reduce, see `Trainer`) is the gradient one
  /// process computes with micro-batch `W x micro_batch`. Call before the
  /// first step; `W x micro_batch` must divide `total_batch`.
  void set_collective(std::shared_ptr<Collective> collective);
  const Collective& collective() const { return *collective_; }

  /// Moves the momentum bank encoder's average one step towards the current
  /// weights (`BankEncoder::Momentum`; nothing otherwise). Call it after
  /// every applied optimizer step, not after a discarded one.
  void update_bank_encoder();
  /// The momentum bank encoder (null unless `BankEncoder::Momentum`).
  const MomentumEncoder* momentum_encoder() const { return momentum_ ? &*momentum_ : nullptr; }

  /// Re-encodes the staleness sample's banked examples (`staleness_sample`)
  /// with the current towers, without autograd and in eval mode, and
  /// compares them with the banked rows: cosines per bank and by age, and
  /// how many positives change place. Changes no state and draws no random
  /// number, so a run measured every step trains bit for bit as one never
  /// measured. Cost: one forward pass over `staleness_sample` queries and
  /// passage groups. Throws when no sample is kept.
  BankStaleness measure_staleness();
  /// `compute_gradients` calls so far, less the discarded ones: a banked
  /// row's age is this minus its bank tag.
  int64_t steps() const { return steps_; }

  /// Empties both banks.
  void clear_banks();
  const MemoryBank& query_bank() const { return query_bank_; }
  const MemoryBank& passage_bank() const { return passage_bank_; }
  /// The banked rows' cached log-sum-exps (empty unless both banks feed the
  /// loss).
  const BankScoreCache& bank_scores() const { return bank_scores_; }
  const StrategyOptions& options() const { return options_; }
  const DualEncoder& model() const { return model_; }

  /// Undoes the bank writes of the last `compute_gradients` (a step whose
  /// gradients are thrown away, e.g. not finite): the banks hold what they
  /// held before it. Each step keeps a copy of the bank rows it overwrites
  /// for this (`total_batch` rows); the score cache is rebuilt.
  void discard_step();

  /// Saves / restores both banks, in storage order with their tags, the bank
  /// score cache, the step count, the momentum encoder's average and the
  /// staleness sample (for checkpoints): a restored strategy continues bit
  /// for bit as the saved one would have.
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  // Whether the loss scores by cosine (the banks then keep unit rows).
  bool cosine_loss() const { return options_.loss().similarity() == Similarity::Cosine; }
  struct Encoded {
    torch::Tensor queries;   // [n, d]
    torch::Tensor passages;  // [n, 1 + h, d]
  };
  Encoded encode(const TrainingBatch& chunk);
  // Rows per global micro-batch: what one process with W x micro_batch cuts.
  int64_t chunk_rows() const;
  // A "group" here is always a loss group: the examples one InfoNCE loss is
  // computed over (`StepStats::loss_groups`); an example's passages are its
  // `passages_per_example()`.
  // This rank's rows of the group (its parts of `shards`, concatenated),
  // gathered from every rank into the group's row order; `local` keeps its
  // autograd graph.
  Encoded gather(const Encoded& local, const detail::RowShards& shards, int64_t passages_per_example);
  // `gather` in two halves: the collective started, then its rows put in
  // order once every rank's have arrived.
  PendingRows start_gather(const Encoded& local, const detail::RowShards& shards);
  Encoded finish_gather(const Encoded& local, PendingRows& gathering, const detail::RowShards& shards,
                        int64_t passages_per_example);
  // The parts concatenated (empty tensors of the right shape for none).
  Encoded concat(const std::vector<Encoded>& parts, int64_t passages_per_example) const;
  InfoNCEBank bank_view() const;
  // A loss group's rows encoded by this rank with autograd, their gather in
  // flight (`encode_direct`), until `backward_direct` takes it.
  struct GroupInFlight;
  std::unique_ptr<GroupInFlight> encode_direct(const TrainingBatch& group);
  // Backpropagates `weight * loss` of one loss group; returns the loss result
  // and the group's representations, detached, for the banks.
  std::pair<InfoNCEResult, Encoded> backward_direct(GroupInFlight& group, double weight, const InfoNCEIds& ids);
  std::pair<InfoNCEResult, Encoded> backward_cached(const TrainingBatch& group, double weight, const InfoNCEIds& ids);
  // The group's passage identities when false negatives are masked, else none.
  InfoNCEIds identities(const TrainingBatch& group) const;
  // Writes the group's representations into the banks (tagged with the
  // step count), updates the score cache from the loss's `scores` of them
  // where it can, and keeps the staleness sample's inputs.
  void enqueue(const Encoded& reps, const TrainingBatch& group, const InfoNCEBankScores& scores, const InfoNCEIds& ids);
  // The group encoded for the banks by the momentum encoder, replaying the
  // random state `before` the group's first encoding.
  Encoded encode_for_banks(const TrainingBatch& group, const RngState& before);

  DualEncoder model_;
  StrategyOptions options_;
  std::shared_ptr<Collective> collective_;
  MemoryBank query_bank_;
  MemoryBank passage_bank_;
  // The banked queries' log-sum-exp over the banked passages, kept
  // incrementally (only used when both banks feed the loss).
  BankScoreCache bank_scores_;
  bool use_bank_scores_ = false;
  MemoryBank::Undo query_undo_, passage_undo_;  // of the last step
  std::optional<MomentumEncoder> momentum_;
  std::unique_ptr<detail::StalenessSample> sample_;
  int64_t steps_ = 0;
  double loss_scale_ = 1.0;
  double encode_seconds_ = 0.0, loss_seconds_ = 0.0, gather_seconds_ = 0.0;  // of the step in progress
};

}  // namespace contaccum
