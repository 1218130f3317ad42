#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace contaccum {

/// A batch of encoder inputs: one row per text.
///
/// `input_ids` and `attention_mask` are the common case (`[batch, seq]`,
/// int64, mask 1 for real tokens and 0 for padding). Anything else an encoder
/// needs (token type ids, precomputed features, ...) travels in `extras`;
/// every tensor in it must also have the batch as its first dimension, so the
/// strategies can cut micro-batches out of it with `slice`.
struct EncoderInput {
  /// Token ids, `[batch, seq]`, int64.
  torch::Tensor input_ids;
  /// 1 for real tokens, 0 for padding, `[batch, seq]`. May be undefined when
  /// the encoder does not need it.
  torch::Tensor attention_mask;
  /// Further per-row inputs, keyed by name; first dimension is the batch.
  std::map<std::string, torch::Tensor> extras;

  /// Number of rows. Throws when the tensors disagree on it.
  int64_t size() const;
  /// Rows `[begin, end)` of every tensor (views, no copy).
  EncoderInput slice(int64_t begin, int64_t end) const;
  /// Every tensor moved to `device` (no-op for tensors already there).
  EncoderInput to(const torch::Device& device) const;
  /// A copy in pinned (page-locked) host memory, which `to` copies to a GPU
  /// without blocking. Needs a LibTorch with CUDA; elsewhere throws.
  EncoderInput pin_memory() const;
};

}  // namespace contaccum
