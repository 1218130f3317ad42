#include "contaccum/encoders/transformer.h"

#include "contaccum/io/atomic_file.h"
#include "contaccum/io/safetensors.h"

#include <ATen/Dispatch.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

namespace contaccum {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const std::vector<std::string> kActivations{"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"};

torch::Tensor activate(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "relu") return torch::relu(x);
  return torch::silu(x);  // "silu" / "swish"; the constructor rejects others
}

// Hugging Face's additive mask: 0 where attended, the dtype's lowest value
// where masked, so padded keys get exactly zero probability unless a whole
// row is padding.
torch::Tensor additive_mask(const torch::Tensor& mask, torch::ScalarType dtype) {
  double lowest = 0.0;
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, dtype, "additive_mask",
                                  [&] { lowest = static_cast<double>(std::numeric_limits<scalar_t>::lowest()); });
  auto m = mask.to(dtype).unsqueeze(1).unsqueeze(2);  // [B, 1, 1, T]
  return (1.0 - m) * lowest;
}

}  // namespace

// ---------------------------------------------------------------------------
// Options <-> config.json

TransformerEncoderOptions TransformerEncoderOptions::from_hf_config(const std::string& path) {
  std::ifstream in(path);
  TORCH_CHECK(in.is_open(), "cannot open BERT config '", path, "'");
  json config;
  try {
    in >> config;
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "BERT config '", path, "' is not valid JSON: ", e.what());
  }
  TORCH_CHECK(config.is_object(), "BERT config '", path, "' must be a JSON object, got ", config.type_name());
  auto require = [&](const char* key) -> const json& {
    TORCH_CHECK(config.contains(key), "BERT config '", path, "' has no \"", key, "\" key");
    return config[key];
  };
  auto integer = [&](const char* key, const json& v) {
    TORCH_CHECK(v.is_number_integer(), "BERT config '", path, "': \"", key, "\" must be an integer, got ", v.dump());
    return v.get<int64_t>();
  };
  auto number = [&](const char* key, const json& v) {
    TORCH_CHECK(v.is_number(), "BERT config '", path, "': \"", key, "\" must be a number, got ", v.dump());
    return v.get<double>();
  };
  auto string = [&](const char* key, const json& v) {
    TORCH_CHECK(v.is_string(), "BERT config '", path, "': \"", key, "\" must be a string, got ", v.dump());
    return v.get<std::string>();
  };
  if (config.contains("model_type")) {
    const auto type = string("model_type", config["model_type"]);
    TORCH_CHECK(type == "bert", "BERT config '", path, "': model_type \"", type,
                "\" is not supported (only \"bert\": other architectures name or arrange their weights differently)");
  }
  if (config.contains("position_embedding_type")) {
    const auto type = string("position_embedding_type", config["position_embedding_type"]);
    TORCH_CHECK(type == "absolute", "BERT config '", path, "': position_embedding_type \"", type,
                "\" is not supported (only \"absolute\")");
  }

  TransformerEncoderOptions o(integer("vocab_size", require("vocab_size")));
  o.hidden_size(integer("hidden_size", require("hidden_size")));
  o.num_hidden_layers(integer("num_hidden_layers", require("num_hidden_layers")));
  o.num_attention_heads(integer("num_attention_heads", require("num_attention_heads")));
  o.intermediate_size(integer("intermediate_size", require("intermediate_size")));
  o.max_position_embeddings(integer("max_position_embeddings", require("max_position_embeddings")));
  o.type_vocab_size(integer("type_vocab_size", require("type_vocab_size")));
  o.hidden_dropout_prob(number("hidden_dropout_prob", require("hidden_dropout_prob")));
  o.attention_probs_dropout_prob(number("attention_probs_dropout_prob", require("attention_probs_dropout_prob")));
  o.hidden_act(string("hidden_act", require("hidden_act")));
  if (config.contains("layer_norm_eps")) o.layer_norm_eps(number("layer_norm_eps", config["layer_norm_eps"]));
  if (config.contains("initializer_range")) {
    o.initializer_range(number("initializer_range", config["initializer_range"]));
  }
  if (config.contains("pad_token_id")) {
    const auto& pad = config["pad_token_id"];
    o.pad_token_id(pad.is_null() ? -1 : integer("pad_token_id", pad));
  }
  if (config.contains("contaccum_pooling")) {
    const auto pooling = string("contaccum_pooling", config["contaccum_pooling"]);
    TORCH_CHECK(pooling == "cls" || pooling == "mean", "BERT config '", path,
                "': contaccum_pooling must be \"cls\" or \"mean\", got \"", pooling, "\"");
    o.pooling(pooling == "cls" ? TransformerPooling::Cls : TransformerPooling::Mean);
  }
  return o;
}

std::string TransformerEncoderOptions::to_hf_config(const std::string& torch_dtype) const {
  nlohmann::ordered_json config;
  config["architectures"] = {"BertModel"};
  config["model_type"] = "bert";
  config["vocab_size"] = vocab_size();
  config["hidden_size"] = hidden_size();
  config["num_hidden_layers"] = num_hidden_layers();
  config["num_attention_heads"] = num_attention_heads();
  config["intermediate_size"] = intermediate_size();
  config["hidden_act"] = hidden_act();
  config["hidden_dropout_prob"] = hidden_dropout_prob();
  config["attention_probs_dropout_prob"] = attention_probs_dropout_prob();
  config["max_position_embeddings"] = max_position_embeddings();
  config["type_vocab_size"] = type_vocab_size();
  config["initializer_range"] = initializer_range();
  config["layer_norm_eps"] = layer_norm_eps();
  if (pad_token_id() >= 0) {
    config["pad_token_id"] = pad_token_id();
  } else {
    config["pad_token_id"] = nullptr;
  }
  config["position_embedding_type"] = "absolute";
  config["torch_dtype"] = torch_dtype;
  // Hugging Face keeps unknown keys; from_hf_config reads this one back.
  config["contaccum_pooling"] = pooling() == TransformerPooling::Cls ? "cls" : "mean";
  return config.dump(2) + "\n";
}

// ---------------------------------------------------------------------------
// The modules. Each registers its children under Hugging Face's attribute
// names, so named_parameters() yields Hugging Face's state-dict names.

namespace detail {

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
  TORCH_CHECK(std::find(kActivations.begin(), kActivations.end(), o.hidden_act()) != kActivations.end(),
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

// ---------------------------------------------------------------------------
// Checkpoints

void TransformerEncoderImpl::load_hf_weights(const std::string& path) {
  const auto file = load_safetensors(path);
  std::set<std::string> used;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (parameter, source)
  for (const auto& kv : named_parameters()) {
    const auto& name = kv.key();
    std::vector<std::string> names{name};
    // Checkpoints converted from the original TensorFlow BERT name LayerNorm
    // parameters gamma and beta.
    if (ends_with(name, "LayerNorm.weight")) names.push_back(name.substr(0, name.size() - 6) + "gamma");
    if (ends_with(name, "LayerNorm.bias")) names.push_back(name.substr(0, name.size() - 4) + "beta");
    std::vector<std::string> candidates = names;
    for (const auto& n : names) candidates.push_back("bert." + n);
    std::vector<std::string> present;
    for (const auto& c : candidates) {
      if (file.count(c)) present.push_back(c);
    }
    TORCH_CHECK(!present.empty(), "load_hf_weights: '", path, "' has no tensor '", name, "' (also looked for ",
                c10::Join(", ", std::vector<std::string>(candidates.begin() + 1, candidates.end())), ")");
    TORCH_CHECK(present.size() == 1, "load_hf_weights: '", path, "' holds tensor '", name, "' under several names (",
                c10::Join(", ", present), ")");
    const auto& source = file.at(present.front());
    TORCH_CHECK(source.sizes() == kv.value().sizes(), "load_hf_weights: tensor '", present.front(), "' in '", path,
                "' has shape ", source.sizes(), ", expected ", kv.value().sizes(),
                " (does the config match the checkpoint?)");
    TORCH_CHECK(source.is_floating_point(), "load_hf_weights: tensor '", present.front(), "' in '", path,
                "' must be floating point, got ", source.scalar_type());
    used.insert(present.front());
    copies.emplace_back(kv.value(), source);
  }
  for (const auto& kv : file) {
    if (used.count(kv.first)) continue;
    const auto bare = kv.first.rfind("bert.", 0) == 0 ? kv.first.substr(5) : kv.first;
    if (bare == "embeddings.position_ids" || bare == "embeddings.token_type_ids") continue;
    // Leftovers inside the encoder mean a config that does not fit the
    // checkpoint (more layers, another architecture); heads are fine.
    TORCH_CHECK(bare.rfind("embeddings.", 0) != 0 && bare.rfind("encoder.", 0) != 0, "load_hf_weights: '", path,
                "' holds unexpected tensor '", kv.first, "' (num_hidden_layers = ", options_.num_hidden_layers(),
                "; does the config match the checkpoint?)");
  }
  torch::NoGradGuard no_grad;
  for (auto& c : copies) c.first.copy_(c.second);
}

void TransformerEncoderImpl::save_hf_weights(const std::string& path) const {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& kv : named_parameters()) tensors.emplace(kv.key(), kv.value());
  save_safetensors(path, tensors, {{"format", "pt"}});
}

void TransformerEncoderImpl::save_hf_pretrained(const std::string& directory) const {
  const fs::path dir(directory);
  std::error_code ec;
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec, "save_hf_pretrained: cannot create directory '", directory, "': ", ec.message());
  std::string dtype = "float32";
  const auto params = parameters();
  if (!params.empty()) {
    switch (params.front().scalar_type()) {
      case torch::kDouble:
        dtype = "float64";
        break;
      case torch::kHalf:
        dtype = "float16";
        break;
      case torch::kBFloat16:
        dtype = "bfloat16";
        break;
      default:
        break;
    }
  }
  save_hf_weights((dir / "model.safetensors").string());
  write_file_atomically(dir / "config.json", options_.to_hf_config(dtype));
}

TransformerEncoder load_hf_pretrained(const std::string& directory, std::optional<TransformerPooling> pooling) {
  const fs::path dir(directory);
  auto options = TransformerEncoderOptions::from_hf_config((dir / "config.json").string());
  if (pooling) options.pooling(*pooling);
  TransformerEncoder encoder(options);
  encoder->load_hf_weights((dir / "model.safetensors").string());
  return encoder;
}

}  // namespace contaccum
