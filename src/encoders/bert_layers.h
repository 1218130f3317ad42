#pragma once
// Internal: BERT's embedding and transformer layers, the parts of
// TransformerEncoder. Not installed.

#include "contaccum/core/precision.h"
#include "contaccum/encoders/transformer.h"

#include <ATen/Dispatch.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <string>
#include <vector>

namespace contaccum {
namespace detail {

/// Hugging Face's `hidden_act` values this encoder implements.
inline const std::vector<std::string>& bert_activations() {
  static const std::vector<std::string> names{"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"};
  return names;
}

inline torch::Tensor activate(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "relu") return torch::relu(x);
  return torch::silu(x);  // "silu" / "swish"; the constructor rejects others
}

/// Hugging Face's additive mask: 0 where attended, the dtype's lowest value
/// where masked, so padded keys get exactly zero probability unless a whole
/// row is padding.
inline torch::Tensor additive_mask(const torch::Tensor& mask, torch::ScalarType dtype) {
  auto m = mask.to(dtype).unsqueeze(1).unsqueeze(2);  // [B, 1, 1, T]
  return (1.0 - m) * lowest_finite(dtype);
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit BertEmbeddingsImpl(const TransformerEncoderOptions& o) : torch::nn::Module("BertEmbeddings") {
    torch::nn::EmbeddingOptions words(o.vocab_size(), o.hidden_size());
    if (o.pad_token_id() >= 0) words.padding_idx(o.pad_token_id());
    word_embeddings = register_module("word_embeddings", torch::nn::Embedding(words));
    position_embeddings =
        register_module("position_embeddings", torch::nn::Embedding(o.max_position_embeddings(), o.hidden_size()));
    token_type_embeddings =
        register_module("token_type_embeddings", torch::nn::Embedding(o.type_vocab_size(), o.hidden_size()));
    LayerNorm = register_module(
        "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_size()}).eps(o.layer_norm_eps())));
    dropout = register_module("dropout", torch::nn::Dropout(o.hidden_dropout_prob()));
  }

  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& token_types) {
    auto positions = torch::arange(ids.size(1), ids.options().dtype(torch::kLong)).unsqueeze(0);
    // Same summation order as Hugging Face, for bit-level agreement.
    auto embedded = word_embeddings->forward(ids) + token_type_embeddings->forward(token_types);
    embedded = embedded + position_embeddings->forward(positions);
    return dropout->forward(LayerNorm->forward(embedded));
  }

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};

class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit BertSelfAttentionImpl(const TransformerEncoderOptions& o)
      : torch::nn::Module("BertSelfAttention"),
        heads_(o.num_attention_heads()),
        head_size_(o.hidden_size() / o.num_attention_heads()) {
    query = register_module("query", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
    key = register_module("key", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
    value = register_module("value", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
    dropout = register_module("dropout", torch::nn::Dropout(o.attention_probs_dropout_prob()));
  }

  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& mask) {
    const auto batch = hidden.size(0), seq = hidden.size(1);
    auto heads = [&](const torch::Tensor& x) { return x.view({batch, seq, heads_, head_size_}).permute({0, 2, 1, 3}); };
    auto q = heads(query->forward(hidden)), k = heads(key->forward(hidden)), v = heads(value->forward(hidden));
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_size_));
    if (mask.defined()) scores = scores + mask;
    auto probs = dropout->forward(torch::softmax(scores, -1));
    return torch::matmul(probs, v).permute({0, 2, 1, 3}).contiguous().view({batch, seq, heads_ * head_size_});
  }

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  int64_t heads_, head_size_;
};

// Hugging Face's BertSelfOutput and BertOutput: dense, dropout, residual,
// LayerNorm.
class BertDenseNormImpl : public torch::nn::Module {
 public:
  BertDenseNormImpl(const TransformerEncoderOptions& o, int64_t in_features) : torch::nn::Module("BertOutput") {
    dense = register_module("dense", torch::nn::Linear(in_features, o.hidden_size()));
    LayerNorm = register_module(
        "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_size()}).eps(o.layer_norm_eps())));
    dropout = register_module("dropout", torch::nn::Dropout(o.hidden_dropout_prob()));
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual) {
    return LayerNorm->forward(dropout->forward(dense->forward(x)) + residual);
  }

  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};

class BertAttentionImpl : public torch::nn::Module {
 public:
  explicit BertAttentionImpl(const TransformerEncoderOptions& o) : torch::nn::Module("BertAttention") {
    self = register_module("self", std::make_shared<BertSelfAttentionImpl>(o));
    output = register_module("output", std::make_shared<BertDenseNormImpl>(o, o.hidden_size()));
  }
  std::shared_ptr<BertSelfAttentionImpl> self;
  std::shared_ptr<BertDenseNormImpl> output;
};

class BertIntermediateImpl : public torch::nn::Module {
 public:
  explicit BertIntermediateImpl(const TransformerEncoderOptions& o) : torch::nn::Module("BertIntermediate") {
    dense = register_module("dense", torch::nn::Linear(o.hidden_size(), o.intermediate_size()));
  }
  torch::nn::Linear dense{nullptr};
};

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const TransformerEncoderOptions& o) : torch::nn::Module("BertLayer"), act_(o.hidden_act()) {
    attention = register_module("attention", std::make_shared<BertAttentionImpl>(o));
    intermediate = register_module("intermediate", std::make_shared<BertIntermediateImpl>(o));
    output = register_module("output", std::make_shared<BertDenseNormImpl>(o, o.intermediate_size()));
  }

  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& mask) {
    auto attended = attention->output->forward(attention->self->forward(hidden, mask), hidden);
    auto inner = activate(act_, intermediate->dense->forward(attended));
    return output->forward(inner, attended);
  }

  std::shared_ptr<BertAttentionImpl> attention;
  std::shared_ptr<BertIntermediateImpl> intermediate;
  std::shared_ptr<BertDenseNormImpl> output;

 private:
  std::string act_;
};

}  // namespace detail
}  // namespace contaccum
