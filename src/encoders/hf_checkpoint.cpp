// TransformerEncoder's Hugging Face checkpoints: model.safetensors and
// config.json in, and out; and the encoder's registration.
#include "contaccum/encoders/transformer.h"

#include "contaccum/encoders/registry.h"
#include "contaccum/io/atomic_file.h"
#include "contaccum/io/safetensors.h"

#include "bert_layers.h"

#include <c10/util/StringUtil.h>
#include <torch/utils.h>

#include <algorithm>
#include <filesystem>
#include <set>

namespace contaccum {

namespace fs = std::filesystem;
using detail::ends_with;

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

EncoderRegistration transformer_registration() {
  EncoderRegistration r;
  r.name = "transformer";
  r.options = {
      {"hidden_size", int64_t{256}, "hidden width (default 256)", positive_integer()},
      {"layers", int64_t{4}, "transformer layers (default 4)", positive_integer()},
      {"heads", int64_t{4}, "attention heads; must divide hidden_size (default 4)", positive_integer()},
      {"intermediate_size", int64_t{1024}, "feed-forward width (default 1024)", positive_integer()},
      {"dropout", 0.1, "hidden and attention dropout (default 0.1)", fraction_below_one()},
      {"pooling", std::string(), "cls or mean (default: cls)", {}},
      {"pretrained",
       std::string(),
       "a Hugging Face BERT directory (config.json, model.safetensors, vocab.txt) to "
       "start from (default: none)",
       {}},
  };
  r.validate = [](const EncoderSettings& s) {
    const auto& pooling = s.text("pooling");
    TORCH_CHECK(pooling.empty() || pooling == "cls" || pooling == "mean", "config key '", s.name_of("pooling"),
                "' must be one of cls, mean; got '", pooling, "'");
  };
  r.make_tower = [](const EncoderSettings& s, const TowerContext& c) -> std::shared_ptr<EncoderModule> {
    const auto pooling = s.text("pooling") == "mean" ? TransformerPooling::Mean : TransformerPooling::Cls;
    if (!s.text("pretrained").empty()) return load_hf_pretrained(s.text("pretrained"), pooling).ptr();
    return TransformerEncoder(TransformerEncoderOptions(c.vocab_size)
                                  .hidden_size(s.integer("hidden_size"))
                                  .num_hidden_layers(s.integer("layers"))
                                  .num_attention_heads(s.integer("heads"))
                                  .intermediate_size(s.integer("intermediate_size"))
                                  .max_position_embeddings(c.max_positions)
                                  .hidden_dropout_prob(s.number("dropout"))
                                  .attention_probs_dropout_prob(s.number("dropout"))
                                  .pooling(pooling)
                                  .pad_token_id(c.pad_id))
        .ptr();
  };
  r.output_dim = [](const EncoderSettings& s) { return s.integer("hidden_size"); };
  r.pretrained_key = "pretrained";
  r.export_hf = [](const EncoderModule& tower, const std::string& directory) {
    const auto* t = dynamic_cast<const TransformerEncoderImpl*>(&tower);
    TORCH_CHECK(t != nullptr, "transformer export: the tower is not a TransformerEncoder");
    t->save_hf_pretrained(directory);
  };
  return r;
}

}  // namespace contaccum
