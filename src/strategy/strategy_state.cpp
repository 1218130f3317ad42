// The strategy's saved state: the banks, the step count, the options that
// change the gradients (checked on load), the momentum encoder, the
// staleness sample and the bank score cache; and what older checkpoints
// lack (banks saved before they kept unit rows, no score cache).
#include "contaccum/strategy/strategy.h"

#include "contaccum/core/unit_rows.h"

#include "staleness_sample.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

namespace contaccum {
namespace {

// Makes a loaded bank's rows unit-norm in place (checkpoints written before
// the banks kept unit rows).
void normalise_in_place(const MemoryBank& bank) {
  if (bank.empty()) return;
  torch::NoGradGuard no_grad;
  auto rows = bank.view();  // shares the bank's storage
  rows.div_(rows.norm(2, {-1}, /*keepdim=*/true).clamp_min(kUnitRowsMinNorm));
}

}  // namespace

void Strategy::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive q, p;
  query_bank_.save(q);
  passage_bank_.save(p);
  archive.write("query_bank", q);
  archive.write("passage_bank", p);
  archive.write("steps", torch::tensor(steps_, torch::kLong));
  archive.write("options", fingerprint_tensor(options_.fingerprint()));
  if (cosine_loss()) archive.write("unit_bank_rows", torch::tensor(int64_t{1}, torch::kLong));
  if (momentum_) {
    torch::serialize::OutputArchive ema;
    momentum_->save(ema);
    archive.write("momentum_encoder", ema);
  }
  if (sample_) {
    torch::serialize::OutputArchive sample;
    sample_->save(sample);
    archive.write("staleness_sample", sample);
  }
  if (use_bank_scores_) {
    torch::serialize::OutputArchive scores;
    bank_scores_.save(scores);
    archive.write("bank_scores", scores);
  }
}

void Strategy::load(torch::serialize::InputArchive& archive) {
  // Options that change the gradients must be the ones the banks were made
  // with (checkpoints from before they were recorded are not checked).
  torch::Tensor saved_options;
  if (archive.try_read("options", saved_options)) {
    check_same_fingerprint(fingerprint_from_tensor(saved_options), options_.fingerprint(), "Strategy::load");
  }
  torch::serialize::InputArchive q, p;
  archive.read("query_bank", q);
  archive.read("passage_bank", p);
  // On the model's device, whatever the archive was mapped to.
  const auto device = model_->device();
  query_bank_.load(q, device);
  passage_bank_.load(p, device);
  torch::Tensor steps, unit_rows_flag;
  steps_ = archive.try_read("steps", steps) ? steps.item<int64_t>() : 0;
  // Cosine banks saved before they kept unit rows are normalised now, and
  // their saved score cache is recomputed from them.
  const bool renormalised = cosine_loss() && !archive.try_read("unit_bank_rows", unit_rows_flag);
  if (renormalised) {
    normalise_in_place(query_bank_);
    normalise_in_place(passage_bank_);
  }
  if (momentum_) {
    // A checkpoint of a run without the momentum encoder starts the average
    // at the loaded weights.
    torch::serialize::InputArchive ema;
    if (archive.try_read("momentum_encoder", ema)) {
      momentum_->load(ema, *model_);
    } else {
      momentum_->initialize(*model_);
    }
  }
  if (sample_) {
    torch::serialize::InputArchive sample;
    // Kept with another sample size: it fills again as the banks are written.
    if (archive.try_read("staleness_sample", sample)) sample_->load(sample);
  }
  if (!use_bank_scores_) return;
  torch::serialize::InputArchive scores;
  if (!renormalised && archive.try_read("bank_scores", scores)) {
    bank_scores_.load(scores, query_bank_, passage_bank_);
  } else {
    // A checkpoint from before the cache was saved, or before the banks kept
    // unit rows: the same values, though not the same last bits as the
    // interrupted run.
    bank_scores_.rebuild(query_bank_, passage_bank_);
  }
}

}  // namespace contaccum
