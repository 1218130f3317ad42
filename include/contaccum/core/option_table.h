#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace contaccum {

/// One setting's value as option tables carry it: enums by their names.
using OptionValue = std::variant<bool, int64_t, double, std::string>;

/// `value` as a config file writes it: `true` / `false`, integers, the
/// shortest decimal that reads back to the same double (`0.1`, `2e-05`),
/// strings as they are.
std::string option_value_text(const OptionValue& value);

/// "" when `value` is allowed, else what it must be ("must be > 0").
using OptionRule = std::function<std::string(const OptionValue& value)>;

/// Numbers greater than `bound` (and finite).
OptionRule greater_than(double bound);
/// Numbers at least `bound` (and finite).
OptionRule at_least(double bound);
/// Numbers in [low, high) (and finite).
OptionRule in_half_open_range(double low, double high);
/// Numbers in [low, high].
OptionRule in_closed_range(double low, double high);
/// Numbers in (low, high).
OptionRule in_open_range(double low, double high);
/// Strings among `choices` ("must be one of a, b, c").
OptionRule one_of(std::vector<std::string> choices);
/// `rule` with `note` after what it says ("must be >= 0 (0 disables
/// clipping)").
OptionRule noted(OptionRule rule, std::string note);

/// One field of an options struct, declared once: its key, what it is, its
/// accessors, the rule its value obeys and whether it changes what training
/// computes. A struct's table (`X::fields()`) is the one list its parsing,
/// printing, validation and checkpoint fingerprint read.
template <typename Options>
struct OptionField {
  /// Its key; dotted when it belongs to a nested struct (`loss.temperature`).
  std::string name;
  /// What it is, in one line.
  std::string doc;
  /// Whether another value gives other numbers (not only other speed or
  /// diagnostics): such fields make the fingerprint checkpoints compare.
  bool changes_results = true;
  std::function<OptionValue(const Options&)> get;
  /// Throws, naming the field, on a value of another type (an integer is
  /// taken for a floating-point field) or an unknown enum name.
  std::function<void(Options&, const OptionValue&)> set;
  /// Empty: any value of its type.
  OptionRule rule;
};

template <typename Options>
using OptionTable = std::vector<OptionField<Options>>;

/// Every enum's names, written once, beside the enum: specialised for each
/// (`Similarity`, `GradientMode`, ...) in its own source file.
template <typename E>
const std::vector<std::pair<E, std::string>>& enum_names();

/// `value`'s name in `enum_names<E>()`.
template <typename E>
std::string enum_name(E value) {
  for (const auto& [e, name] : enum_names<E>()) {
    if (e == value) return name;
  }
  TORCH_CHECK(false, "enum value ", static_cast<int64_t>(value), " has no name");
}

/// The enum value named `name`; throws "`what` must be a, b or c, got 'x'".
template <typename E>
E enum_value(const std::string& name, const std::string& what) {
  std::string choices;
  const auto& names = enum_names<E>();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].second == name) return names[i].first;
    choices += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i].second;
  }
  TORCH_CHECK(false, what, " must be ", choices, ", got '", name, "'");
}

namespace detail {
[[noreturn]] void wrong_option_type(const std::string& name, const char* expected, const OptionValue& got);

template <typename T>
OptionValue to_option_value(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return enum_name(v);
  } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string> || std::is_same_v<T, double>) {
    return v;
  } else {
    static_assert(std::is_integral_v<T>, "option fields are bool, integer, double, string or enum");
    return static_cast<int64_t>(v);
  }
}

template <typename T>
T from_option_value(const std::string& name, const OptionValue& value) {
  if constexpr (std::is_enum_v<T>) {
    if (const auto* s = std::get_if<std::string>(&value)) return enum_value<T>(*s, name);
    wrong_option_type(name, "a name", value);
  } else if constexpr (std::is_same_v<T, double>) {
    if (const auto* d = std::get_if<double>(&value)) return *d;
    if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
    wrong_option_type(name, "a number", value);
  } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    if (const auto* v = std::get_if<T>(&value)) return *v;
    wrong_option_type(name, std::is_same_v<T, bool> ? "true or false" : "a string", value);
  } else {
    if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<T>(*i);
    wrong_option_type(name, "an integer", value);
  }
}
}  // namespace detail

/// A field read and written through accessors (for TORCH_ARG fields, see
/// `CONTACCUM_OPTION_ACCESSORS`); its type (bool, integer, double, string or
/// an enum with `enum_names`) is the getter's.
template <typename Options, typename Get, typename Set>
OptionField<Options> option_field(std::string name, std::string doc, Get get, Set set, OptionRule rule = {},
                                  bool changes_results = true) {
  using T = std::decay_t<decltype(get(std::declval<const Options&>()))>;
  OptionField<Options> field;
  field.name = name;
  field.doc = std::move(doc);
  field.changes_results = changes_results;
  field.get = [get](const Options& o) { return detail::to_option_value<T>(get(o)); };
  field.set = [set, name](Options& o, const OptionValue& v) { set(o, detail::from_option_value<T>(name, v)); };
  field.rule = std::move(rule);
  return field;
}

/// The getter and setter TORCH_ARG(T, name) declares, as `option_field` takes
/// them.
#define CONTACCUM_OPTION_ACCESSORS(name) \
  [](const auto& o) { return o.name(); }, [](auto& o, const auto& v) { o.name(v); }

/// Appends `inner`'s fields to `out` as `prefix` + their names, reached
/// through the outer struct's accessors of the nested struct.
template <typename Outer, typename Inner, typename Get, typename Set>
void append_nested_fields(OptionTable<Outer>& out, const std::string& prefix, const OptionTable<Inner>& inner,
                          Get get_inner, Set set_inner) {
  for (const auto& f : inner) {
    OptionField<Outer> field;
    field.name = prefix + f.name;
    field.doc = f.doc;
    field.changes_results = f.changes_results;
    field.get = [f, get_inner](const Outer& o) { return f.get(get_inner(o)); };
    field.set = [f, get_inner, set_inner](Outer& o, const OptionValue& v) {
      auto nested = get_inner(o);
      f.set(nested, v);
      set_inner(o, nested);
    };
    field.rule = f.rule;
    out.push_back(std::move(field));
  }
}

/// The field of `table` named `name`; throws when there is none (a typo in
/// a table that reuses another's field).
template <typename Options>
const OptionField<Options>& find_option_field(const OptionTable<Options>& table, const std::string& name) {
  for (const auto& f : table) {
    if (f.name == name) return f;
  }
  TORCH_CHECK(false, "no option field named '", name, "'");
}

/// Field `inner_name` of `inner`'s table, reached through the public member
/// `member` of `Outer` and named `key` there: how a composition of options
/// structs (`TrainConfig`) takes its members' fields with their docs and
/// rules, each written once, in the struct that owns it.
template <typename Outer, typename Inner>
OptionField<Outer> member_field(std::string key, Inner Outer::*member, const OptionTable<Inner>& inner,
                                const std::string& inner_name) {
  const auto& f = find_option_field(inner, inner_name);
  OptionField<Outer> field;
  field.name = std::move(key);
  field.doc = f.doc;
  field.changes_results = f.changes_results;
  field.get = [get = f.get, member](const Outer& o) { return get(o.*member); };
  field.set = [set = f.set, member, inner_name, key = field.name](Outer& o, const OptionValue& v) {
    try {
      set(o.*member, v);
    } catch (const c10::Error& e) {
      // The inner struct's errors name its field: name the outer key.
      std::string message = e.what_without_backtrace();
      if (message.rfind(inner_name, 0) == 0) message = key + message.substr(inner_name.size());
      TORCH_CHECK(false, message);
    }
  };
  field.rule = f.rule;
  return field;
}

/// Checks every field's rule; throws "`owner`::name must be ..., got value"
/// for the first that fails.
template <typename Options>
void check_option_fields(const Options& options, const OptionTable<Options>& table, const std::string& owner) {
  for (const auto& f : table) {
    if (!f.rule) continue;
    const auto value = f.get(options);
    const auto broken = f.rule(value);
    TORCH_CHECK(broken.empty(), owner, "::", f.name, " ", broken, ", got ", option_value_text(value));
  }
}

/// The fields that change results, one "name=value" line each in table
/// order: what a checkpoint records of the options it was written with.
template <typename Options>
std::string option_fingerprint(const Options& options, const OptionTable<Options>& table) {
  std::string out;
  for (const auto& f : table) {
    if (f.changes_results) out += f.name + "=" + option_value_text(f.get(options)) + "\n";
  }
  return out;
}

/// Throws "`what`: the checkpoint was written with name = a, this run has b"
/// for the first field whose value differs between two fingerprints. A
/// field only one of them has (added or removed since) is not compared.
void check_same_fingerprint(const std::string& saved, const std::string& current, const std::string& what);

/// A fingerprint as a tensor of its bytes (uint8), for checkpoints, and back.
torch::Tensor fingerprint_tensor(const std::string& fingerprint);
std::string fingerprint_from_tensor(const torch::Tensor& bytes);

}  // namespace contaccum
