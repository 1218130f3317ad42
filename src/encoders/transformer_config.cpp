// TransformerEncoderOptions <-> Hugging Face's config.json.
#include "contaccum/encoders/transformer.h"

#include "bert_layers.h"

#include <c10/util/StringUtil.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>

namespace contaccum {

using nlohmann::json;

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

}  // namespace contaccum
