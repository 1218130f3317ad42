#include "contaccum/core/option_table.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <sstream>

namespace contaccum {
namespace {

std::string number_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buffer[64];
  // The shortest form that reads back to the same double.
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, v).ptr;
  return std::string(buffer, end);
}

// The value as a double, when it is a number.
bool as_number(const OptionValue& value, double& out) {
  if (const auto* d = std::get_if<double>(&value)) {
    out = *d;
    return true;
  }
  if (const auto* i = std::get_if<int64_t>(&value)) {
    out = static_cast<double>(*i);
    return true;
  }
  return false;
}

// A rule on numbers: `ok` decides, `words` says what the value must be.
OptionRule number_rule(std::function<bool(double)> ok, std::string words) {
  return [ok = std::move(ok), words = std::move(words)](const OptionValue& value) -> std::string {
    double v = 0;
    if (!as_number(value, v)) return "";
    return std::isfinite(v) && ok(v) ? "" : words;
  };
}

std::map<std::string, std::string> fingerprint_lines(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

}  // namespace

std::string option_value_text(const OptionValue& value) {
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return number_text(*d);
  return std::get<std::string>(value);
}

OptionRule greater_than(double bound) {
  return number_rule([bound](double v) { return v > bound; }, "must be > " + number_text(bound));
}

OptionRule at_least(double bound) {
  return number_rule([bound](double v) { return v >= bound; }, "must be >= " + number_text(bound));
}

OptionRule in_half_open_range(double low, double high) {
  return number_rule([low, high](double v) { return v >= low && v < high; },
                     "must be in [" + number_text(low) + ", " + number_text(high) + ")");
}

OptionRule in_closed_range(double low, double high) {
  return number_rule([low, high](double v) { return v >= low && v <= high; },
                     "must be in [" + number_text(low) + ", " + number_text(high) + "]");
}

OptionRule in_open_range(double low, double high) {
  return number_rule([low, high](double v) { return v > low && v < high; },
                     "must be in (" + number_text(low) + ", " + number_text(high) + ")");
}

OptionRule one_of(std::vector<std::string> choices) {
  std::string words = "must be one of ";
  for (size_t i = 0; i < choices.size(); ++i) words += (i == 0 ? "" : ", ") + choices[i];
  return [choices = std::move(choices), words](const OptionValue& value) -> std::string {
    const auto* s = std::get_if<std::string>(&value);
    if (s == nullptr) return "";
    return std::find(choices.begin(), choices.end(), *s) == choices.end() ? words : "";
  };
}

OptionRule noted(OptionRule rule, std::string note) {
  return [rule = std::move(rule), note = std::move(note)](const OptionValue& value) -> std::string {
    auto broken = rule(value);
    return broken.empty() ? broken : broken + " " + note;
  };
}

void check_same_fingerprint(const std::string& saved, const std::string& current, const std::string& what) {
  const auto was = fingerprint_lines(saved);
  std::istringstream in(current);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const auto name = line.substr(0, eq), value = line.substr(eq + 1);
    const auto found = was.find(name);
    TORCH_CHECK(found == was.end() || found->second == value, what, ": the checkpoint was written with ", name, " = ",
                found == was.end() ? "" : found->second, ", this run has ", value);
  }
}

torch::Tensor fingerprint_tensor(const std::string& fingerprint) {
  auto bytes = torch::empty({static_cast<int64_t>(fingerprint.size())}, torch::kUInt8);
  std::copy(fingerprint.begin(), fingerprint.end(), bytes.data_ptr<uint8_t>());
  return bytes;
}

std::string fingerprint_from_tensor(const torch::Tensor& bytes) {
  TORCH_CHECK(bytes.dim() == 1 && bytes.scalar_type() == torch::kUInt8, "a saved fingerprint must be bytes, got ",
              bytes.sizes(), " ", bytes.scalar_type());
  const auto cpu = bytes.cpu().contiguous();
  const auto* data = cpu.data_ptr<uint8_t>();
  return std::string(data, data + cpu.numel());
}

namespace detail {
void wrong_option_type(const std::string& name, const char* expected, const OptionValue& got) {
  TORCH_CHECK(false, name, " must be ", expected, ", got '", option_value_text(got), "'");
}
}  // namespace detail

}  // namespace contaccum
