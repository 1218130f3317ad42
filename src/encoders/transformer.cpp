#include "contaccum/encoders/transformer.h"

#include "bert_layers.h"

#include <c10/util/StringUtil.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>

namespace contaccum {

using detail::additive_mask;
using detail::ends_with;

// ---------------------------------------------------------------------------
// TransformerEncoderImpl

TransformerEncoderImpl::TransformerEncoderImpl(TransformerEncoderOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  auto positive = [](const char* name, int64_t value) {
    TORCH_CHECK(value > 0, "TransformerEncoderOptions::", name, " must be > 0, got ", value);
  };
  positive("vocab_size", o.vocab_size());
  positive("hidden_size", o.hidden_size());
  positive("num_hidden_layers", o.num_hidden_layers());
  positive("num_attention_heads", o.num_attention_heads());
  positive("intermediate_size", o.intermediate_size());
  positive("max_position_embeddings", o.max_position_embeddings());
  positive("type_vocab_size", o.type_vocab_size());
  TORCH_CHECK(o.hidden_size() % o.num_attention_heads() == 0,
              "TransformerEncoderOptions::hidden_size must be a multiple of num_attention_heads = ",
              o.num_attention_heads(), ", got ", o.hidden_size());
  TORCH_CHECK(o.hidden_dropout_prob() >= 0.0 && o.hidden_dropout_prob() < 1.0,
              "TransformerEncoderOptions::hidden_dropout_prob must be in [0, 1), got ", o.hidden_dropout_prob());
  TORCH_CHECK(o.attention_probs_dropout_prob() >= 0.0 && o.attention_probs_dropout_prob() < 1.0,
              "TransformerEncoderOptions::attention_probs_dropout_prob must be in [0, 1), got ",
              o.attention_probs_dropout_prob());
  TORCH_CHECK(o.layer_norm_eps() > 0.0, "TransformerEncoderOptions::layer_norm_eps must be > 0, got ",
              o.layer_norm_eps());
  TORCH_CHECK(o.initializer_range() >= 0.0, "TransformerEncoderOptions::initializer_range must be >= 0, got ",
              o.initializer_range());
  TORCH_CHECK(o.pad_token_id() >= -1 && o.pad_token_id() < o.vocab_size(),
              "TransformerEncoderOptions::pad_token_id must be -1 (none) or in [0, vocab_size = ", o.vocab_size(),
              "), got ", o.pad_token_id());
  TORCH_CHECK(std::find(detail::bert_activations().begin(), detail::bert_activations().end(), o.hidden_act()) !=
                  detail::bert_activations().end(),
              "TransformerEncoderOptions::hidden_act must be one of gelu, gelu_new, gelu_pytorch_tanh, relu, silu, "
              "swish, got \"",
              o.hidden_act(), "\"");

  embeddings_ = register_module("embeddings", std::make_shared<detail::BertEmbeddingsImpl>(o));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>("BertEncoder"));
  auto layer_list = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_hidden_layers(); ++i) {
    layers_.push_back(std::make_shared<detail::BertLayerImpl>(o));
    layer_list->push_back(layers_.back());
  }

  // Hugging Face's BertPreTrainedModel._init_weights.
  torch::NoGradGuard no_grad;
  for (auto& kv : named_parameters()) {
    const auto& name = kv.key();
    auto& p = kv.value();
    const bool is_norm = name.find("LayerNorm.") != std::string::npos;
    if (is_norm && ends_with(name, "weight")) {
      p.fill_(1.0);
    } else if (ends_with(name, "bias")) {
      p.zero_();
    } else {
      p.normal_(0.0, o.initializer_range());
    }
  }
  if (o.pad_token_id() >= 0) embeddings_->word_embeddings->weight[o.pad_token_id()].zero_();
}

torch::Tensor TransformerEncoderImpl::encode_tokens(const EncoderInput& input) {
  const auto& o = options_;
  const auto& ids = input.input_ids;
  TORCH_CHECK(ids.defined() && ids.dim() == 2, "TransformerEncoder: input_ids must be [batch, seq], got ",
              ids.defined() ? c10::str(ids.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(ids.scalar_type() == torch::kLong || ids.scalar_type() == torch::kInt,
              "TransformerEncoder: input_ids must be int64 or int32, got ", ids.scalar_type());
  TORCH_CHECK(ids.size(1) >= 1, "TransformerEncoder: input_ids must hold at least one token per row");
  TORCH_CHECK(ids.size(1) <= o.max_position_embeddings(), "TransformerEncoder: sequence length ", ids.size(1),
              " exceeds max_position_embeddings = ", o.max_position_embeddings());
  if (ids.numel() > 0) {
    // Embedding's own error ("index out of range in self") does not say which input.
    const auto range = torch::aminmax(ids);
    const auto lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < o.vocab_size(),
                "TransformerEncoder: input_ids must be in [0, vocab_size = ", o.vocab_size(), "), got values in [", lo,
                ", ", hi, "]");
  }
  const auto& mask = input.attention_mask;
  if (mask.defined()) {
    TORCH_CHECK(mask.sizes() == ids.sizes(), "TransformerEncoder: attention_mask ", mask.sizes(),
                " must match input_ids ", ids.sizes());
  }
  torch::Tensor token_types;
  const auto found = input.extras.find("token_type_ids");
  if (found != input.extras.end() && found->second.defined()) {
    token_types = found->second;
    TORCH_CHECK(token_types.sizes() == ids.sizes(), "TransformerEncoder: token_type_ids ", token_types.sizes(),
                " must match input_ids ", ids.sizes());
    if (token_types.numel() > 0) {
      const auto range = torch::aminmax(token_types);
      const auto lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < o.type_vocab_size(), "TransformerEncoder: token_type_ids must be in [0, ",
                  "type_vocab_size = ", o.type_vocab_size(), "), got values in [", lo, ", ", hi, "]");
    }
  } else {
    token_types = torch::zeros_like(ids);
  }

  auto hidden = embeddings_->forward(ids, token_types);
  // No mask means every token is attended: adding zeros would change nothing.
  const auto extended = mask.defined() ? additive_mask(mask, hidden.scalar_type()) : torch::Tensor();
  for (auto& layer : layers_) hidden = layer->forward(hidden, extended);
  return hidden;
}

torch::Tensor TransformerEncoderImpl::pool(const torch::Tensor& states, const torch::Tensor& mask) const {
  if (options_.pooling() == TransformerPooling::Cls) return states.select(1, 0);
  if (!mask.defined()) return states.mean(1);
  auto m = mask.to(states.scalar_type()).unsqueeze(-1);
  // Clamp keeps all-padding rows finite (they pool to zero).
  return (states * m).sum(1) / m.sum(1).clamp_min(1.0);
}

torch::Tensor TransformerEncoderImpl::forward(const EncoderInput& input) {
  return pool(encode_tokens(input), input.attention_mask);
}

}  // namespace contaccum
