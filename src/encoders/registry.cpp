#include "contaccum/encoders/registry.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <algorithm>

namespace contaccum {

template <typename T>
const T& EncoderSettings::get(const std::string& key) const {
  const auto it = values_.find(key);
  TORCH_CHECK(it != values_.end(), "encoder option '", name_of(key), "' is not set");
  const T* value = std::get_if<T>(&it->second);
  TORCH_CHECK(value != nullptr, "encoder option '", name_of(key), "' has another type");
  return *value;
}

template const int64_t& EncoderSettings::get<int64_t>(const std::string&) const;
template const double& EncoderSettings::get<double>(const std::string&) const;
template const bool& EncoderSettings::get<bool>(const std::string&) const;
template const std::string& EncoderSettings::get<std::string>(const std::string&) const;

EncoderRegistry& EncoderRegistry::global() {
  static EncoderRegistry* registry = [] {
    auto* r = new EncoderRegistry();  // never destroyed: used until exit
    // The built-in encoders: one line each.
    r->add(bag_of_embeddings_registration());
    r->add(transformer_registration());
    return r;
  }();
  return *registry;
}

void EncoderRegistry::add(EncoderRegistration encoder) {
  TORCH_CHECK(!encoder.name.empty(), "EncoderRegistry::add: the encoder needs a name");
  TORCH_CHECK(!contains(encoder.name), "EncoderRegistry::add: an encoder '", encoder.name, "' is already registered");
  TORCH_CHECK(encoder.make_tower && encoder.output_dim, "EncoderRegistry::add: encoder '", encoder.name,
              "' needs make_tower and output_dim");
  const auto known = options();
  for (const auto& spec : encoder.options) {
    const auto same = std::find_if(known.begin(), known.end(), [&](const auto& k) { return k.key == spec.key; });
    TORCH_CHECK(same == known.end() || same->default_value == spec.default_value, "EncoderRegistry::add: encoder '",
                encoder.name, "' declares option '", spec.key,
                "' with another type or default than an earlier encoder");
  }
  if (!encoder.pretrained_key.empty()) {
    const bool declared = std::any_of(encoder.options.begin(), encoder.options.end(), [&](const auto& s) {
      return s.key == encoder.pretrained_key && std::holds_alternative<std::string>(s.default_value);
    });
    TORCH_CHECK(declared, "EncoderRegistry::add: encoder '", encoder.name, "' names pretrained_key '",
                encoder.pretrained_key, "' but declares no text option of that name");
  }
  encoders_.push_back(std::move(encoder));
}

bool EncoderRegistry::contains(const std::string& name) const {
  return std::any_of(encoders_.begin(), encoders_.end(), [&](const auto& e) { return e.name == name; });
}

const EncoderRegistration& EncoderRegistry::at(const std::string& name) const {
  for (const auto& e : encoders_) {
    if (e.name == name) return e;
  }
  std::string list;
  for (const auto& e : encoders_) list += (list.empty() ? "" : ", ") + e.name;
  TORCH_CHECK(false, "config key 'encoder' must be one of ", list, "; got '", name, "'");
}

std::vector<std::string> EncoderRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& e : encoders_) out.push_back(e.name);
  return out;
}

std::vector<EncoderOptionSpec> EncoderRegistry::options() const {
  std::vector<EncoderOptionSpec> out;
  for (const auto& e : encoders_) {
    for (const auto& spec : e.options) {
      if (std::none_of(out.begin(), out.end(), [&](const auto& k) { return k.key == spec.key; })) out.push_back(spec);
    }
  }
  return out;
}

EncoderSettings EncoderRegistry::defaults() const {
  EncoderSettings out;
  for (const auto& spec : options()) out.set(spec.key, spec.default_value);
  return out;
}

OptionValue option_value_of(const EncoderValue& value) {
  return std::visit([](const auto& v) { return OptionValue(v); }, value);
}

EncoderValue encoder_value_of(const OptionValue& value) {
  return std::visit([](const auto& v) { return EncoderValue(v); }, value);
}

std::function<std::string(const EncoderValue&)> positive_integer() {
  return [](const EncoderValue& v) -> std::string {
    const auto n = std::get<int64_t>(v);
    return n > 0 ? "" : c10::str("must be > 0, got ", n);
  };
}

std::function<std::string(const EncoderValue&)> fraction_below_one() {
  return [](const EncoderValue& v) -> std::string {
    const auto x = std::get<double>(v);
    return x >= 0 && x < 1 ? "" : c10::str("must be in [0, 1), got ", x);
  };
}

}  // namespace contaccum
