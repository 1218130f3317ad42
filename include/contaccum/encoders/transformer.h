#pragma once

#include "contaccum/encoders/encoder.h"

#include <torch/arg.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// How `TransformerEncoder` turns the final token states into one vector per
/// text.
enum class TransformerPooling {
  /// The first token's state ([CLS]), as DPR and most BERT retrievers do.
  Cls,
  /// The mean of the states of the real tokens (attention mask 1), as
  /// Contriever does.
  Mean,
};

/// Options of `TransformerEncoder`: a BERT configuration (same names and
/// defaults as Hugging Face's `BertConfig`, BERT-base sizes) plus the pooling.
///
/// Example:
/// ```
/// // From a Hugging Face checkpoint directory:
/// auto options = TransformerEncoderOptions::from_hf_config("bert-base-uncased/config.json");
/// TransformerEncoder enc(options.pooling(TransformerPooling::Mean));
/// enc->load_hf_weights("bert-base-uncased/model.safetensors");
/// // Or a small tower trained from scratch:
/// TransformerEncoder small(TransformerEncoderOptions(30522).hidden_size(256).num_hidden_layers(4)
///                              .num_attention_heads(4).intermediate_size(1024));
/// ```
struct TransformerEncoderOptions {
  /// `vocab_size`: number of token ids (30522 for BERT's uncased vocabulary).
  explicit TransformerEncoderOptions(int64_t vocab_size) : vocab_size_(vocab_size) {}

  /// Number of token ids. Required.
  TORCH_ARG(int64_t, vocab_size);
  /// Width of the token states and of the output. Default: 768.
  TORCH_ARG(int64_t, hidden_size) = 768;
  /// Number of encoder layers. Default: 12.
  TORCH_ARG(int64_t, num_hidden_layers) = 12;
  /// Attention heads per layer; must divide `hidden_size`. Default: 12.
  TORCH_ARG(int64_t, num_attention_heads) = 12;
  /// Width of the feed-forward block. Default: 3072.
  TORCH_ARG(int64_t, intermediate_size) = 3072;
  /// Longest sequence the position embeddings cover. Default: 512.
  TORCH_ARG(int64_t, max_position_embeddings) = 512;
  /// Number of token types (segments). Default: 2.
  TORCH_ARG(int64_t, type_vocab_size) = 2;
  /// Dropout on embeddings and on every sub-layer output, active in training
  /// mode. Default: 0.1.
  TORCH_ARG(double, hidden_dropout_prob) = 0.1;
  /// Dropout on the attention probabilities, active in training mode.
  /// Default: 0.1.
  TORCH_ARG(double, attention_probs_dropout_prob) = 0.1;
  /// Epsilon of every LayerNorm. Default: 1e-12.
  TORCH_ARG(double, layer_norm_eps) = 1e-12;
  /// Feed-forward activation, with Hugging Face's names: "gelu" (exact, erf),
  /// "gelu_new" or "gelu_pytorch_tanh" (tanh approximation), "relu", "silu" or
  /// "swish". Default: "gelu".
  TORCH_ARG(std::string, hidden_act) = "gelu";
  /// Standard deviation of the normal initialisation of linear and embedding
  /// weights (biases start at zero, LayerNorms at identity). Default: 0.02.
  TORCH_ARG(double, initializer_range) = 0.02;
  /// Pooling of the final token states. Default: `TransformerPooling::Cls`.
  TORCH_ARG(TransformerPooling, pooling) = TransformerPooling::Cls;
  /// Token id whose embedding starts at zero and gets no gradient; -1 for
  /// none. Default: 0 (BERT's [PAD]).
  TORCH_ARG(int64_t, pad_token_id) = 0;

 public:
  /// Reads a Hugging Face BERT `config.json`. Required keys: vocab_size,
  /// hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
  /// max_position_embeddings, type_vocab_size, hidden_dropout_prob,
  /// attention_probs_dropout_prob, hidden_act. Optional: layer_norm_eps
  /// (old configs lack it), initializer_range, pad_token_id (null means
  /// none), and contaccum_pooling ("cls" or "mean", written by
  /// `save_hf_pretrained`). A `model_type` other than "bert" or a
  /// `position_embedding_type` other than "absolute" is rejected. Throws
  /// `c10::Error` naming the file and the key on a missing key, a wrong type
  /// or a file that is not JSON.
  static TransformerEncoderOptions from_hf_config(const std::string& path);
  /// The options as the text of a Hugging Face `config.json` for `BertModel`
  /// (with "model_type": "bert", "architectures": ["BertModel"],
  /// "torch_dtype": `torch_dtype`, e.g. "float32", and contaccum_pooling).
  std::string to_hf_config(const std::string& torch_dtype = "float32") const;
};

namespace detail {
class BertEmbeddingsImpl;
class BertLayerImpl;
}  // namespace detail

/// A BERT encoder: the architecture of Hugging Face's `BertModel` without
/// its pooler (word + position + token type embeddings, LayerNorm, dropout,
/// then post-LayerNorm layers of multi-head self-attention and a feed-forward
/// block), followed by `[CLS]` or mean pooling.
///
/// Parameter names are Hugging Face's (`embeddings.word_embeddings.weight`,
/// `encoder.layer.0.attention.self.query.weight`, ...), so checkpoints map
/// one to one; see `load_hf_weights` and `save_hf_pretrained`. Dropout draws
/// from the global generators, so GradCache's replay works.
class TransformerEncoderImpl : public EncoderModule {
 public:
  /// Builds the model with freshly initialised weights (see
  /// `TransformerEncoderOptions::initializer_range`). Throws `c10::Error` on
  /// invalid options.
  explicit TransformerEncoderImpl(TransformerEncoderOptions options);

  /// `input.input_ids` `[batch, seq]` (int64, ids in `[0, vocab_size)`, seq at
  /// most `max_position_embeddings`); `input.attention_mask` `[batch, seq]`
  /// (optional: all tokens count when undefined); token type ids from
  /// `input.extras["token_type_ids"]` when present, else zeros. Returns the
  /// pooled `[batch, hidden_size]` representations.
  torch::Tensor forward(const EncoderInput& input) override;
  /// The final token states `[batch, seq, hidden_size]`, before pooling; same
  /// inputs as `forward`.
  torch::Tensor encode_tokens(const EncoderInput& input);
  /// `hidden_size`.
  int64_t output_dim() const override { return options_.hidden_size(); }
  /// The options the model was built with.
  const TransformerEncoderOptions& options() const { return options_; }

  /// Copies the weights of a Hugging Face BERT checkpoint in safetensors
  /// format into this model (converting the dtype). Names may carry a `bert.`
  /// prefix (BertForMaskedLM, BertForPreTraining checkpoints); LayerNorm
  /// weights may be called `gamma`/`beta`; `pooler.*`, `cls.*`, the
  /// `embeddings.position_ids` and `embeddings.token_type_ids` buffers and
  /// tensors outside `embeddings.*`/`encoder.*` are ignored. Throws
  /// `c10::Error` naming the tensor and the file, leaving the model
  /// unchanged, on a missing tensor, a shape mismatch (with both shapes), a
  /// non-floating-point tensor, a name found both with and without the
  /// prefix, or an unexpected `embeddings.*`/`encoder.*` tensor (e.g. more
  /// layers than `num_hidden_layers`).
  void load_hf_weights(const std::string& safetensors_path);
  /// Writes every parameter under its Hugging Face name (no prefix), in the
  /// model's dtype, to a safetensors file (metadata {"format": "pt"}, as
  /// `transformers` expects).
  void save_hf_weights(const std::string& safetensors_path) const;
  /// Writes `directory/model.safetensors` and `directory/config.json`
  /// (creating the directory), loadable with `BertModel.from_pretrained(directory)`
  /// in Python (whose pooler, absent here, is then freshly initialised) and
  /// with `load_hf_pretrained`.
  void save_hf_pretrained(const std::string& directory) const;

 private:
  torch::Tensor pool(const torch::Tensor& states, const torch::Tensor& mask) const;

  TransformerEncoderOptions options_;
  std::shared_ptr<detail::BertEmbeddingsImpl> embeddings_;
  std::vector<std::shared_ptr<detail::BertLayerImpl>> layers_;
};

/// Module holder of `TransformerEncoderImpl`.
TORCH_MODULE(TransformerEncoder);

/// A `TransformerEncoder` from a Hugging Face checkpoint directory holding
/// `config.json` and `model.safetensors` (as `save_hf_pretrained` writes, or
/// as downloaded from the Hub). `pooling` overrides the config's
/// contaccum_pooling when given.
TransformerEncoder load_hf_pretrained(const std::string& directory,
                                      std::optional<TransformerPooling> pooling = std::nullopt);

}  // namespace contaccum
