#include "contaccum/encoders/torchscript.h"

#include <c10/util/StringUtil.h>
#include <torch/script.h>

#include <filesystem>
#include <map>
#include <set>
#include <unordered_set>

namespace contaccum {

struct TorchScriptEncoderImpl::State {
  torch::jit::Module module;
};

namespace {

std::vector<std::string> split_name(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
    parts.push_back(name.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(name.substr(start));
  return parts;
}

}  // namespace

TorchScriptEncoderImpl::TorchScriptEncoderImpl(TorchScriptEncoderOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  const auto& path = options_.path();
  TORCH_CHECK(options_.output_dim() > 0, "TorchScriptEncoderOptions::output_dim must be > 0, got ",
              options_.output_dim());
  TORCH_CHECK(!options_.inputs().empty(), "TorchScriptEncoderOptions::inputs must name at least one input");
  std::error_code ec;
  TORCH_CHECK(std::filesystem::is_regular_file(path, ec), "TorchScriptEncoder: no such file '", path, "'");
  try {
    state_->module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "TorchScriptEncoder: cannot load '", path,
                "' as a TorchScript module: ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "TorchScriptEncoder: cannot load '", path, "' as a TorchScript module: ", e.what());
  }
  TORCH_CHECK(state_->module.find_method(options_.method()).has_value(), "TorchScriptEncoder: '", path,
              "' has no method '", options_.method(), "'");

  // Mirror the scripted hierarchy with empty modules, so that names stay
  // those of the Python model ("encoder.layers.0.linear.weight") and the
  // very same tensors are shared: to() and optimisers act on both at once.
  std::map<std::string, std::shared_ptr<torch::nn::Module>> mirrors;
  auto owner = [&](const std::string& name) -> std::pair<torch::nn::Module*, std::string> {
    const auto parts = split_name(name);
    torch::nn::Module* parent = this;
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix += (prefix.empty() ? "" : ".") + parts[i];
      auto& mirror = mirrors[prefix];
      if (!mirror) mirror = parent->register_module(parts[i], std::make_shared<torch::nn::Module>(parts[i]));
      parent = mirror.get();
    }
    return {parent, parts.back()};
  };
  // A tensor reachable under two names (tied weights) is registered once, or
  // optimisers would step it twice.
  std::unordered_set<const void*> seen;
  for (const auto& p : state_->module.named_parameters(/*recurse=*/true)) {
    if (!seen.insert(p.value.unsafeGetTensorImpl()).second) continue;
    auto where = owner(p.name);
    where.first->register_parameter(where.second, p.value, p.value.requires_grad());
  }
  for (const auto& b : state_->module.named_buffers(/*recurse=*/true)) {
    if (!b.value.defined() || !seen.insert(b.value.unsafeGetTensorImpl()).second) continue;
    auto where = owner(b.name);
    where.first->register_buffer(where.second, b.value);
  }
  state_->module.train(is_training());
}

TorchScriptEncoderImpl::~TorchScriptEncoderImpl() = default;

void TorchScriptEncoderImpl::train(bool on) {
  torch::nn::Module::train(on);
  state_->module.train(on);
}

torch::jit::Module& TorchScriptEncoderImpl::scripted() { return state_->module; }

void TorchScriptEncoderImpl::save_scripted(const std::string& path) const { state_->module.save(path); }

torch::Tensor TorchScriptEncoderImpl::forward(const EncoderInput& input) {
  const auto& path = options_.path();
  const auto& ids = input.input_ids;
  const int64_t rows = input.size();
  std::vector<c10::IValue> args;
  for (const auto& name : options_.inputs()) {
    if (name == "input_ids") {
      TORCH_CHECK(ids.defined(), "TorchScriptEncoder('", path, "'): input_ids is undefined");
      args.emplace_back(ids);
    } else if (name == "attention_mask") {
      if (input.attention_mask.defined()) {
        args.emplace_back(input.attention_mask);
      } else {
        TORCH_CHECK(ids.defined(), "TorchScriptEncoder('", path,
                    "'): attention_mask is undefined and there are no input_ids to build one from");
        args.emplace_back(torch::ones_like(ids));
      }
    } else {
      const auto found = input.extras.find(name);
      if (found != input.extras.end()) {
        args.emplace_back(found->second);
      } else if (name == "token_type_ids" && ids.defined()) {
        args.emplace_back(torch::zeros_like(ids));
      } else {
        std::vector<std::string> keys;
        for (const auto& kv : input.extras) keys.push_back(kv.first);
        TORCH_CHECK(false, "TorchScriptEncoder('", path, "'): input '", name,
                    "' is neither input_ids, attention_mask nor a key of EncoderInput::extras (keys: ",
                    c10::Join(", ", keys), ")");
      }
    }
  }
  auto result = state_->module.get_method(options_.method())(std::move(args));

  const auto& key = options_.output_key();
  const auto index = options_.output_index();
  if (result.isTuple() || result.isList()) {
    const auto elements = result.isTuple() ? result.toTupleRef().elements().vec() : result.toList().vec();
    TORCH_CHECK(index >= 0 && index < static_cast<int64_t>(elements.size()), "TorchScriptEncoder('", path,
                "'): output_index ", index, " is out of range: the module returns ", elements.size(), " values");
    result = elements[index];
  } else if (result.isGenericDict()) {
    const auto dict = result.toGenericDict();
    std::vector<std::string> keys;
    for (const auto& kv : dict) keys.push_back(kv.key().isString() ? kv.key().toStringRef() : kv.key().tagKind());
    TORCH_CHECK(!key.empty(), "TorchScriptEncoder('", path,
                "'): the module returns a dict; set output_key to one of its keys (", c10::Join(", ", keys), ")");
    const auto found = dict.find(c10::IValue(key));
    TORCH_CHECK(found != dict.end(), "TorchScriptEncoder('", path, "'): output_key '", key,
                "' is not among the keys of the returned dict (", c10::Join(", ", keys), ")");
    result = found->value();
  }
  TORCH_CHECK(result.isTensor(), "TorchScriptEncoder('", path, "'): the selected output must be a tensor, got ",
              result.tagKind());
  auto out = result.toTensor();
  if (out.dim() == 3) {
    if (options_.pooling() == TorchScriptPooling::Cls) {
      out = out.select(1, 0);
    } else if (!input.attention_mask.defined()) {
      out = out.mean(1);
    } else {
      TORCH_CHECK(input.attention_mask.sizes() == out.sizes().slice(0, 2), "TorchScriptEncoder('", path,
                  "'): attention_mask ", input.attention_mask.sizes(), " does not match the output ", out.sizes());
      auto m = input.attention_mask.to(out.scalar_type()).unsqueeze(-1);
      // Clamp keeps all-padding rows finite (they pool to zero).
      out = (out * m).sum(1) / m.sum(1).clamp_min(1.0);
    }
  }
  TORCH_CHECK(out.dim() == 2 && out.size(0) == rows && out.size(1) == options_.output_dim(), "TorchScriptEncoder('",
              path, "'): output must be [batch = ", rows, ", output_dim = ", options_.output_dim(),
              "] (or [batch, seq, output_dim] to pool), got ", out.sizes());
  TORCH_CHECK(out.is_floating_point(), "TorchScriptEncoder('", path, "'): output must be floating point, got ",
              out.scalar_type());
  return out;
}

}  // namespace contaccum
