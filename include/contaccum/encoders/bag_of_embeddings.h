#pragma once

#include "contaccum/encoders/encoder.h"

#include <torch/arg.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace contaccum {

/// How `BagOfEmbeddingsEncoder` pools its token embeddings.
enum class BagPooling {
  /// The mean of the real tokens' embeddings (attention mask 1).
  Mean,
  /// A weighted mean whose weights are a softmax, over the real tokens, of a
  /// learned per-token logit: one rare, telling word can outweigh many common
  /// ones, however long the text. The logits start at zero, so an untrained
  /// encoder pools exactly as `Mean` does.
  Attention,
};

/// Options of `BagOfEmbeddingsEncoder`.
///
/// Example:
/// ```
/// BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(30522, 128).dropout(0.1));
/// ```
struct BagOfEmbeddingsEncoderOptions {
  BagOfEmbeddingsEncoderOptions(int64_t vocab_size, int64_t output_dim)
      : vocab_size_(vocab_size), output_dim_(output_dim) {}

  /// Number of token ids. Required.
  TORCH_ARG(int64_t, vocab_size);
  /// Width of the output representations. Required.
  TORCH_ARG(int64_t, output_dim);
  /// Width of the token embeddings. Default: 256 (as the config's
  /// `encoder_options.embedding_dim`).
  TORCH_ARG(int64_t, embedding_dim) = 256;
  /// Dropout on the pooled embedding, active in training mode. Default: 0.1.
  TORCH_ARG(double, dropout) = 0.1;
  /// Token id whose embedding is fixed at zero. Default: 0 (BERT's [PAD]).
  TORCH_ARG(int64_t, padding_idx) = 0;
  /// Default: `BagPooling::Mean`.
  TORCH_ARG(BagPooling, pooling) = BagPooling::Mean;
};

/// A small, fast encoder: token embeddings, masked mean (or attention)
/// pooling, dropout and a linear projection. Good for tests, the quickstart and as a baseline.
///
/// In training, the backward pass adds the gradients of the embedding table
/// and of the projection's weight and bias into their `.grad` directly
/// (created as zeros when missing), without a parameter-sized temporary per
/// call: these gradients do not pass through autograd, so
/// `torch::autograd::grad` with respect to those parameters sees none and
/// hooks registered on them do not run.
class BagOfEmbeddingsEncoderImpl : public EncoderModule {
 public:
  explicit BagOfEmbeddingsEncoderImpl(BagOfEmbeddingsEncoderOptions options);

  /// `input.input_ids` `[batch, seq]`; `input.attention_mask` optional (all
  /// tokens count when it is undefined). Returns `[batch, output_dim]`.
  torch::Tensor forward(const EncoderInput& input) override;
  int64_t output_dim() const override { return options_.output_dim(); }
  const BagOfEmbeddingsEncoderOptions& options() const { return options_; }

 private:
  BagOfEmbeddingsEncoderOptions options_;
  torch::nn::Embedding embedding_{nullptr};
  /// `[vocab_size, 1]` pooling logits; only with `BagPooling::Attention`.
  torch::nn::Embedding token_logit_{nullptr};
  torch::nn::Linear projection_{nullptr};
};

/// Module holder of `BagOfEmbeddingsEncoderImpl`.
TORCH_MODULE(BagOfEmbeddingsEncoder);

}  // namespace contaccum
