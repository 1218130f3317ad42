#include "contaccum/strategy/strategy.h"

#include "contaccum/core/stopwatch.h"
#include "contaccum/core/strided_view.h"
#include "contaccum/core/unit_rows.h"
#include "contaccum/strategy/rng_state.h"

#include "row_shards.h"
#include "staleness_sample.h"

#include <torch/autograd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <optional>

namespace contaccum {

namespace {
// The loss scores as the model does: the model owns the similarity. A cosine
// loss over a model that returns raw vectors is refused: that model's
// embeddings, evaluation and indexes would rank by inner product, not by
// what it was trained for.
StrategyOptions with_model_similarity(const DualEncoder& model, StrategyOptions options) {
  TORCH_CHECK(!model.is_empty(), "Strategy: model must not be empty");
  const auto mine = model->options().similarity();
  TORCH_CHECK(mine == Similarity::Cosine || options.loss().similarity() == Similarity::Dot,
              "Strategy: StrategyOptions::loss.similarity is cosine but the model scores by dot product: set "
              "DualEncoderOptions::similarity(Similarity::Cosine) on the model (the loss reads it from there, so the "
              "model's embeddings, evaluation and indexes score as it was trained)");
  auto loss = options.loss();
  options.loss(loss.similarity(mine));
  return options;
}

MemoryBankOptions validated_bank(const StrategyOptions& o, bool enabled) {
  o.validate();
  auto bank = MemoryBankOptions(enabled ? o.memory_size() : 0);
  if (o.bank_dtype() != Precision::Fp32) bank.dtype(scalar_type(o.bank_dtype()));
  return bank;
}

// The type the towers' parameters are in: what representations are upcast
// to after an autocast pass.
torch::Tensor as_parameter_type(const torch::Tensor& x, const DualEncoder& model) {
  const auto type = model->parameters().front().scalar_type();
  return x.scalar_type() == type ? x : x.to(type);
}

BankScoreCacheOptions bank_score_options(const StrategyOptions& o, int64_t world) {
  // Blocks the size of one enqueue: a global micro-batch, or the whole batch
  // when the loss spans it.
  const int64_t enqueued =
      o.negatives() == NegativeScope::MicroBatch ? std::min(o.total_batch(), world * o.micro_batch()) : o.total_batch();
  return BankScoreCacheOptions(enqueued).loss(o.loss()).normalized_rows(true);
}

// Rows of unit norm along the last dimension (no gradient), as the loss
// normalises them.
torch::Tensor detached_unit_rows(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return unit_rows(x.detach());
}

}  // namespace

Strategy::Strategy(DualEncoder model, StrategyOptions options)
    : model_(std::move(model)),
      options_(with_model_similarity(model_, options)),
      collective_(local_collective()),
      query_bank_(validated_bank(options_, options_.query_bank())),
      // The passage bank also backs the query bank's targets when banked
      // passages are not used as negatives.
      passage_bank_(validated_bank(options_, options_.query_bank() || options_.passage_bank())),
      bank_scores_(bank_score_options(options_, 1)),
      use_bank_scores_(options_.memory_size() > 0 && options_.query_bank() && options_.passage_bank()) {
  const auto device = model_->device().type();
  TORCH_CHECK(autocast_supported(device, options_.precision()), "Strategy: precision ", enum_name(options_.precision()),
              " has no autocast on the model's device (", c10::DeviceTypeName(device, /*lower_case=*/true),
              "): bf16 runs on the CPU and CUDA, fp16 on CUDA only");
  if (options_.bank_encoder() == BankEncoder::Momentum) momentum_.emplace(options_.momentum());
  if (options_.staleness_sample() > 0 && passage_bank_.capacity() > 0) {
    sample_ = std::make_unique<detail::StalenessSample>(options_.staleness_sample(), passage_bank_.capacity());
  }
}

Strategy::~Strategy() = default;
Strategy::Strategy(Strategy&&) noexcept = default;
Strategy& Strategy::operator=(Strategy&&) noexcept = default;

Strategy::Encoded Strategy::encode(const TrainingBatch& chunk) {
  const int64_t n = chunk.size();
  Encoded out;
  {
    // Every tower pass comes through here, so a replay runs under the same
    // autocast state as the pass it repeats.
    const AutocastGuard autocast(model_->device().type(), options_.precision());
    out.queries = model_->encode_queries(chunk.queries);
    out.passages = model_->encode_passages(chunk.passages);
  }
  out.queries = as_parameter_type(out.queries, model_);
  out.passages = as_parameter_type(out.passages, model_).view({n, chunk.passages_per_example(), model_->dim()});
  return out;
}

void Strategy::set_loss_scale(double scale) {
  TORCH_CHECK(std::isfinite(scale) && scale > 0, "Strategy::set_loss_scale: scale must be finite and > 0, got ", scale);
  loss_scale_ = scale;
}

void Strategy::set_collective(std::shared_ptr<Collective> collective) {
  TORCH_CHECK(collective != nullptr, "Strategy::set_collective: the collective must not be null");
  const int64_t world = collective->world_size();
  const int64_t n = options_.micro_batch(), total = options_.total_batch();
  TORCH_CHECK(total >= world, "Strategy: total_batch (", total, ") must be >= the number of ranks (", world, ")");
  TORCH_CHECK(n == total || total % (world * n) == 0, "Strategy: ", world, " ranks x micro_batch ", n, " = ", world * n,
              " rows per global micro-batch must divide total_batch (", total, ")");
  TORCH_CHECK(query_bank_.empty() && passage_bank_.empty(),
              "Strategy::set_collective: call it before the first step (the banks hold rows)");
  collective_ = std::move(collective);
  bank_scores_ = BankScoreCache(bank_score_options(options_, world));
}

int64_t Strategy::chunk_rows() const {
  const int64_t world = collective_->world_size();
  return world == 1 ? options_.micro_batch() : std::min(options_.total_batch(), world * options_.micro_batch());
}

Strategy::Encoded Strategy::concat(const std::vector<Encoded>& parts, int64_t passages_per_example) const {
  if (parts.size() == 1) return parts[0];
  if (parts.empty()) {
    const auto options = model_->parameters().front().options().requires_grad(false);
    return {torch::empty({0, model_->dim()}, options), torch::empty({0, passages_per_example, model_->dim()}, options)};
  }
  std::vector<torch::Tensor> queries, passages;
  for (const auto& p : parts) {
    queries.push_back(p.queries);
    passages.push_back(p.passages);
  }
  return {torch::cat(queries), torch::cat(passages)};
}

PendingRows Strategy::start_gather(const Encoded& local, const detail::RowShards& shards) {
  if (collective_->world_size() == 1) return {};
  const Stopwatch watch;
  // One collective for both towers: [rows, (1 + passages_per_example) d].
  const auto packed = torch::cat({local.queries.detach(), local.passages.detach().flatten(1)}, 1);
  auto out = start_all_gather_rows(*collective_, packed, shards.counts());
  gather_seconds_ += watch.seconds();
  return out;
}

Strategy::Encoded Strategy::finish_gather(const Encoded& local, PendingRows& gathering, const detail::RowShards& shards,
                                          int64_t passages_per_example) {
  const int64_t world = collective_->world_size();
  if (world == 1) return local;
  const Stopwatch watch;
  const int64_t d = model_->dim();
  const auto per_rank = gathering.wait();
  std::vector<torch::Tensor> queries, passages;
  for (int64_t r = 0; r < world; ++r) {
    const auto& rows = per_rank[static_cast<size_t>(r)];
    const bool mine = r == collective_->rank();
    queries.push_back(mine ? local.queries : rows.slice(1, 0, d));
    passages.push_back(mine ? local.passages : rows.slice(1, d).view({rows.size(0), passages_per_example, d}));
  }
  Encoded out{shards.assemble(queries), shards.assemble(passages)};
  gather_seconds_ += watch.seconds();
  return out;
}

Strategy::Encoded Strategy::gather(const Encoded& local, const detail::RowShards& shards,
                                   int64_t passages_per_example) {
  auto gathering = start_gather(local, shards);
  return finish_gather(local, gathering, shards, passages_per_example);
}

InfoNCEBank Strategy::bank_view() const {
  InfoNCEBank bank;
  if (passage_bank_.empty()) return bank;
  // Banks stored in a reduced type go in as they are: the tiled loss upcasts
  // them a tile at a time (the untiled one whole).
  bank.passages = passage_bank_.view();
  bank.normalized = cosine_loss();
  bank.passages_as_negatives = options_.passage_bank();
  if (options_.query_bank()) bank.queries = query_bank_.view().select(1, 0);
  if (use_bank_scores_) {
    bank.row_logsumexp = bank_scores_.row_logsumexp();
    bank.row_target_dot = bank_scores_.row_target_dot();
  }
  if (options_.mask_false_negatives()) {
    bank.passage_ids = passage_bank_.ids();
    if (options_.query_bank()) bank.query_positive_ids = query_bank_.ids();
  }
  // The score cache's update then multiplies nothing the loss already did;
  // a momentum encoder banks other vectors than the loss scored.
  // A bank in a reduced type stores rounded rows: the cache multiplies those,
  // so that it always equals a rebuild from the stored banks.
  bank.return_scores = use_bank_scores_ && !momentum_ && options_.bank_dtype() == Precision::Fp32;
  return bank;
}

InfoNCEIds Strategy::identities(const TrainingBatch& group) const {
  if (!options_.mask_false_negatives()) return {};
  // Every rank holds the whole global group (each collates it), so the
  // identities need no collective of their own.
  const auto passages = group.passage_identities();
  return InfoNCEIds{passages, group.positive_identities(passages)};
}

struct Strategy::GroupInFlight {
  detail::RowShards shards;
  int64_t passages_per_example = 1;
  Encoded local;  // this rank's rows, with their autograd graph
  PendingRows gathering;
};

std::unique_ptr<Strategy::GroupInFlight> Strategy::encode_direct(const TrainingBatch& group) {
  Stopwatch watch;
  auto out = std::make_unique<GroupInFlight>(GroupInFlight{
      detail::RowShards(group.size(), chunk_rows(), collective_->world_size()), group.passages_per_example(), {}, {}});
  std::vector<Encoded> parts;
  for (const auto& range : out->shards.of(collective_->rank()))
    parts.push_back(encode(group.slice(range.begin, range.end)));
  out->local = concat(parts, out->passages_per_example);
  encode_seconds_ += watch.lap();
  out->gathering = start_gather(out->local, out->shards);
  return out;
}

std::pair<InfoNCEResult, Strategy::Encoded> Strategy::backward_direct(GroupInFlight& group, double weight,
                                                                      const InfoNCEIds& ids) {
  const Encoded reps = finish_gather(group.local, group.gathering, group.shards, group.passages_per_example);
  group.local = {};
  Stopwatch watch;
  auto result = info_nce(reps.queries, reps.passages, options_.loss(), bank_view(), ids);
  loss_seconds_ += watch.lap();
  // A rank with no rows of the group has nothing to backpropagate.
  if (result.loss.requires_grad()) (result.loss * (weight * loss_scale_)).backward();
  encode_seconds_ += watch.lap();
  return {result, Encoded{reps.queries.detach(), reps.passages.detach()}};
}

std::pair<InfoNCEResult, Strategy::Encoded> Strategy::backward_cached(const TrainingBatch& group, double weight,
                                                                      const InfoNCEIds& ids) {
  Stopwatch watch;
  const detail::RowShards shards(group.size(), chunk_rows(), collective_->world_size());
  const auto ranges = shards.of(collective_->rank());
  std::vector<RngState> states;
  std::vector<Encoded> parts;
  {
    torch::NoGradGuard no_grad;
    for (const auto& range : ranges) {
      states.push_back(RngState::capture());
      parts.push_back(encode(group.slice(range.begin, range.end)));
    }
  }
  const auto after_first_pass = RngState::capture();
  encode_seconds_ += watch.lap();
  Encoded all = gather(concat(parts, group.passages_per_example()), shards, group.passages_per_example());
  watch.restart();
  // Leaves: the loss's gradient stops at the representations.
  auto q = all.queries.requires_grad_(true);
  auto p = all.passages.requires_grad_(true);
  auto result = info_nce(q, p, options_.loss(), bank_view(), ids);
  (result.loss * (weight * loss_scale_)).backward();
  const auto q_grad = q.grad(), p_grad = p.grad();
  loss_seconds_ += watch.lap();

  for (size_t c = 0; c < ranges.size(); ++c) {
    states[c].restore();
    auto reps = encode(group.slice(ranges[c].begin, ranges[c].end));
    std::vector<torch::Tensor> outputs, grads;
    if (reps.queries.requires_grad()) {
      outputs.push_back(reps.queries);
      grads.push_back(q_grad.slice(0, ranges[c].begin, ranges[c].end));
    }
    if (reps.passages.requires_grad()) {
      outputs.push_back(reps.passages);
      grads.push_back(p_grad.slice(0, ranges[c].begin, ranges[c].end));
    }
    if (!outputs.empty()) torch::autograd::backward(outputs, grads);
  }
  // Leave the generators where a single pass would have left them.
  after_first_pass.restore();
  encode_seconds_ += watch.lap();
  return {result, Encoded{q.detach(), p.detach()}};
}

Strategy::Encoded Strategy::encode_for_banks(const TrainingBatch& group, const RngState& before) {
  Stopwatch watch;
  // The same dropout masks as the group's first encoding (with momentum 0
  // the banks are bit for bit ContAccum's), and the generators left where
  // that encoding left them.
  const auto after = RngState::capture();
  before.restore();
  const detail::RowShards shards(group.size(), chunk_rows(), collective_->world_size());
  std::vector<Encoded> parts;
  {
    torch::NoGradGuard no_grad;
    const MomentumEncoder::Swap swap(*momentum_, *model_);
    for (const auto& range : shards.of(collective_->rank()))
      parts.push_back(encode(group.slice(range.begin, range.end)));
  }
  after.restore();
  encode_seconds_ += watch.lap();
  return gather(concat(parts, group.passages_per_example()), shards, group.passages_per_example());
}

void Strategy::enqueue(const Encoded& reps, const TrainingBatch& group, const InfoNCEBankScores& scores,
                       const InfoNCEIds& ids) {
  if (passage_bank_.capacity() == 0) return;
  const int64_t first_slot = passage_bank_.head();
  if (sample_) {
    for (int64_t j = 0; j < group.size(); ++j) {
      const int64_t slot = passage_bank_.slot_for(group.size(), j);
      const int64_t index = slot < 0 ? -1 : sample_->index_of(slot);
      if (index >= 0) sample_->record(index, group, j);
    }
  }
  // Cosine scores see only directions: the banks keep unit rows, so that
  // neither the loss nor the score cache normalises a copy of a whole bank
  // on every micro-batch. The loss's own rows when it returned them: the
  // same unit_rows of the same rows, not computed a second time.
  const bool cosine = cosine_loss(), from_loss = scores.queries.defined() && scores.passages.defined();
  const auto queries = from_loss ? scores.queries : cosine ? detached_unit_rows(reps.queries) : reps.queries;
  query_bank_.enqueue(queries, steps_, ids.positives);
  const bool groups = options_.passage_bank() && options_.bank_hard_negatives();
  const auto& all_passages = from_loss ? scores.passages : reps.passages;
  // Views of one call or none (the bank copies what it keeps).
  auto passages = groups ? all_passages : narrow_view(detached(all_passages), 1, 0, 1);
  torch::Tensor passage_ids;
  if (ids.defined()) {
    const auto by_example = ids.passages.dim() == 2 ? ids.passages : ids.passages.view({passages.size(0), -1});
    passage_ids = narrow_view(by_example, 1, 0, passages.size(1));
  }
  if (cosine && !from_loss) passages = detached_unit_rows(passages);
  passage_bank_.enqueue(passages, steps_, passage_ids);
  if (use_bank_scores_) bank_scores_.update(query_bank_, passage_bank_, first_slot, reps.queries.size(0), scores);
}

StepStats Strategy::compute_gradients(const TrainingBatch& batch) {
  const int64_t n = batch.size();
  if (options_.allow_partial_batch()) {
    TORCH_CHECK(n > 0 && n <= options_.total_batch(), "Strategy: batch has ", n, " examples; expected 1..total_batch (",
                options_.total_batch(), ")");
  } else {
    TORCH_CHECK(n == options_.total_batch(), "Strategy: batch has ", n, " examples but total_batch is ",
                options_.total_batch(), " (set allow_partial_batch to accept a smaller last batch)");
  }
  const int64_t group_size = options_.negatives() == NegativeScope::MicroBatch ? chunk_rows() : n;

  StepStats stats;
  encode_seconds_ = loss_seconds_ = gather_seconds_ = 0.0;
  query_bank_.undo_for(n, query_undo_);  // the last step's buffers reused
  passage_bank_.undo_for(n, passage_undo_);
  if (sample_) sample_->begin_step();
  if (momentum_ && !momentum_->initialized()) momentum_->initialize(*model_);
  double negatives = 0.0;
  // With several ranks, each group's towers run before the gather of the
  // group before it is waited for (`StrategyOptions::overlap_gather`).
  const bool overlap = options_.overlap_gather() && options_.gradients() == GradientMode::Direct && !momentum_ &&
                       collective_->world_size() > 1;
  std::unique_ptr<GroupInFlight> next;
  for (int64_t b = 0; b < n; b += group_size) {
    const auto group = batch.slice(b, std::min(n, b + group_size));
    const double weight = static_cast<double>(group.size()) / static_cast<double>(n);
    std::optional<RngState> before;
    if (momentum_) before = RngState::capture();
    const auto ids = identities(group);
    std::pair<InfoNCEResult, Encoded> done;
    if (options_.gradients() == GradientMode::Direct) {
      auto current = next ? std::move(next) : encode_direct(group);
      if (overlap && b + group_size < n)
        next = encode_direct(batch.slice(b + group_size, std::min(n, b + 2 * group_size)));
      done = backward_direct(*current, weight, ids);
    } else {
      done = backward_cached(group, weight, ids);
    }
    if (momentum_) done.second = encode_for_banks(group, *before);
    stats.loss += weight * done.first.loss.item<double>();
    negatives += weight * done.first.negatives_per_query;
    stats.masked += done.first.masked;
    stats.loss_groups += 1;
    stats.micro_batches += static_cast<int64_t>(
        detail::RowShards(group.size(), chunk_rows(), collective_->world_size()).of(collective_->rank()).size());
    const Stopwatch enqueue_watch;
    enqueue(done.second, group, momentum_ ? InfoNCEBankScores() : done.first.bank_scores, ids);
    const double enqueue_seconds = enqueue_watch.seconds();
    loss_seconds_ += enqueue_seconds;
    stats.bank_seconds += enqueue_seconds;
  }
  steps_ += 1;
  stats.negatives_per_query = negatives;
  stats.query_bank_size = query_bank_.size();
  stats.passage_bank_size = passage_bank_.size();
  stats.query_bank_fill = query_bank_.fill();
  stats.passage_bank_fill = passage_bank_.fill();
  if (options_.clear_banks_after_step()) clear_banks();
  stats.encode_seconds = encode_seconds_;
  stats.loss_seconds = loss_seconds_;
  stats.gather_seconds = gather_seconds_;
  return stats;
}

void Strategy::update_bank_encoder() {
  if (momentum_) momentum_->update(*model_);
}

void Strategy::clear_banks() {
  query_bank_.clear();
  passage_bank_.clear();
  bank_scores_.clear();
}

void Strategy::discard_step() {
  query_bank_.undo(query_undo_);
  passage_bank_.undo(passage_undo_);
  query_undo_ = passage_undo_ = {};
  if (sample_) sample_->undo_step();
  steps_ -= 1;
  // Rebuilt, not restored: the same values in other last bits. A resumed run
  // still continues exactly, as checkpoints hold the cache.
  if (use_bank_scores_) bank_scores_.rebuild(query_bank_, passage_bank_);
}

}  // namespace contaccum
