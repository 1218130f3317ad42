#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/encoders/encoder.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace contaccum {

/// The value of one encoder option.
using EncoderValue = std::variant<int64_t, double, bool, std::string>;

/// An encoder's options by key, as a config's `encoder_options` subtree holds
/// them. Typed getters throw naming the key when it is missing or of another
/// type.
class EncoderSettings {
 public:
  int64_t integer(const std::string& key) const { return get<int64_t>(key); }
  double number(const std::string& key) const { return get<double>(key); }
  bool flag(const std::string& key) const { return get<bool>(key); }
  const std::string& text(const std::string& key) const { return get<std::string>(key); }
  void set(const std::string& key, EncoderValue value) { values_[key] = std::move(value); }
  bool contains(const std::string& key) const { return values_.count(key) > 0; }
  const std::map<std::string, EncoderValue>& values() const { return values_; }
  /// How errors name a key: `prefix + key` (a config's "encoder_options.").
  std::string name_of(const std::string& key) const { return prefix_ + key; }
  void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }
  bool operator==(const EncoderSettings& other) const { return values_ == other.values_; }

 private:
  template <typename T>
  const T& get(const std::string& key) const;
  std::map<std::string, EncoderValue> values_;
  std::string prefix_ = "encoder_options.";
};

/// One option an encoder declares.
struct EncoderOptionSpec {
  std::string key;
  /// Its type and default (the variant's alternative is the type).
  EncoderValue default_value;
  /// What it means, with its default (for `--list-keys` and docs).
  std::string doc;
  /// A range check of the value alone: "" when fine, else the problem in the
  /// words that follow the key ("must be > 0, got 0"). May be empty.
  std::function<std::string(const EncoderValue&)> check;
};

/// What a tower factory needs to know beyond the encoder's own options.
struct TowerContext {
  int64_t vocab_size = 0;
  int64_t pad_id = 0;
  /// Longest sequence the tower must take (positions of a transformer).
  int64_t max_positions = 512;
};

/// One encoder the command line, the config and the pipeline can build.
struct EncoderRegistration {
  /// The config's `encoder` value.
  std::string name;
  /// Its keys under `encoder_options.` (two encoders may share a key; then
  /// its type and default must agree).
  std::vector<EncoderOptionSpec> options;
  /// Checks that involve several options or depend on the encoder (a key's
  /// own range is its spec's `check`); throws naming the key. May be empty.
  std::function<void(const EncoderSettings&)> validate;
  /// A new, randomly initialised (or pretrained) tower.
  std::function<std::shared_ptr<EncoderModule>(const EncoderSettings&, const TowerContext&)> make_tower;
  /// Width of the representations `make_tower`'s towers return.
  std::function<int64_t(const EncoderSettings&)> output_dim;
  /// The option naming a pretrained directory (with its `vocab.txt`), if the
  /// encoder has one; "" otherwise.
  std::string pretrained_key;
  /// Optional: writes `tower` as a Hugging Face model directory.
  std::function<void(const EncoderModule& tower, const std::string& directory)> export_hf;
};

/// Encoders by name. `global()` holds the built-in ones (see
/// `EncoderRegistry::global` in `src/encoders/registry.cpp`: one line per
/// encoder); programs may add their own before reading configs.
class EncoderRegistry {
 public:
  static EncoderRegistry& global();
  /// Adds `encoder`; throws when the name is taken, a factory is missing, or
  /// a shared key's type or default disagrees with the other encoder's.
  void add(EncoderRegistration encoder);
  /// Throws listing the registered names when `name` is not one of them.
  const EncoderRegistration& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  /// Registered names, in registration order.
  std::vector<std::string> names() const;
  /// Every encoder's options, each key once, in registration order.
  std::vector<EncoderOptionSpec> options() const;
  /// Every key at its default.
  EncoderSettings defaults() const;

 private:
  std::vector<EncoderRegistration> encoders_;
};

/// Registrations of the built-in encoders (defined beside each encoder).
EncoderRegistration bag_of_embeddings_registration();
EncoderRegistration transformer_registration();

/// Range checks for `EncoderOptionSpec::check`.
std::function<std::string(const EncoderValue&)> positive_integer();
std::function<std::string(const EncoderValue&)> fraction_below_one();

/// An encoder option's value as option tables carry it, and back.
OptionValue option_value_of(const EncoderValue& value);
EncoderValue encoder_value_of(const OptionValue& value);

/// An encoder's options declared as a typed struct with a table (its
/// fields' names, docs and rules, each once): the specs its registration
/// lists, each at its value in `defaults`, its rule as the check. Enums are
/// string keys; integers stay integers.
template <typename Options>
std::vector<EncoderOptionSpec> encoder_option_specs(const OptionTable<Options>& table,
                                                    const Options& defaults = Options()) {
  std::vector<EncoderOptionSpec> specs;
  for (const auto& f : table) {
    EncoderOptionSpec spec;
    spec.key = f.name;
    spec.default_value = encoder_value_of(f.get(defaults));
    spec.doc = f.doc + " (default " + option_value_text(f.get(defaults)) + ")";
    if (f.rule) {
      spec.check = [rule = f.rule](const EncoderValue& v) -> std::string {
        const auto value = option_value_of(v);
        const auto broken = rule(value);
        return broken.empty() ? broken : broken + ", got " + option_value_text(value);
      };
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

/// The typed struct `settings` holds: each field of `table` read from its
/// key (what a tower factory of such an encoder calls).
template <typename Options>
Options encoder_options_from(const EncoderSettings& settings, const OptionTable<Options>& table,
                             Options options = Options()) {
  for (const auto& f : table) f.set(options, option_value_of(settings.values().at(f.name)));
  return options;
}

}  // namespace contaccum
