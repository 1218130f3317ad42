#pragma once
// Range checks for command-line options whose messages name the value and a
// readable range (CLI11's own write the largest double out in 309 digits).
// CLI11 puts the option's name in front of each message.

#include <contaccum/core/compute_threads.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace contaccum::cli {

/// A number in [lo, hi] (either bound infinite: open on that side).
inline CLI::Validator number_in(double lo, double hi, std::string why = "") {
  auto describe = [lo, hi] {
    // Whole bounds as integers (10000000, not 1e+07).
    const auto text = [](double v) {
      std::ostringstream out;
      if (v == std::floor(v) && std::fabs(v) < 1e15) {
        out << static_cast<long long>(v);
      } else {
        out << v;
      }
      return out.str();
    };
    return std::isinf(hi) ? ">= " + text(lo) : "in [" + text(lo) + ", " + text(hi) + "]";
  };
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double value = 0.0;
        size_t used = 0;
        try {
          value = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (text.empty() || used != text.size() || !std::isfinite(value)) return "'" + text + "' is not a number";
        // An integer literal must fit the 64-bit integer it becomes (CLI11
        // would saturate it silently).
        if (text.find_first_of(".eEnN") == std::string::npos) {
          try {
            (void)std::stoll(text);
          } catch (const std::out_of_range&) {
            return "'" + text + "' is out of range (at most " + std::to_string(std::numeric_limits<long long>::max()) +
                   ")";
          }
        }
        if (value < lo || value > hi) return "must be " + describe() + why + ", got " + text;
        return "";
      },
      describe());
}

/// > 0 (integers: >= 1).
inline CLI::Validator positive() { return number_in(1, HUGE_VAL); }
/// >= 0.
inline CLI::Validator non_negative() { return number_in(0, HUGE_VAL); }
/// A token limit: 0 (the model's own) or room for [CLS], a token and [SEP]'s
/// cut: >= 2.
inline CLI::Validator token_limit() {
  const auto at_least_two = number_in(2, HUGE_VAL, " (room for [CLS] and [SEP]), or 0 for the model's own");
  return CLI::Validator(
      [at_least_two](std::string& text) -> std::string { return text == "0" ? "" : at_least_two(text); }, "0 or >= 2");
}

/// A file to write at the end of a long run, checked before the run starts:
/// not a directory, and in a directory that exists.
inline CLI::Validator output_file() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (text.empty()) return "the file name must not be empty";
        if (fs::is_directory(text, ec)) return "'" + text + "' is a directory; give a file name";
        const auto parent = fs::path(text).parent_path();
        if (!parent.empty() && !fs::is_directory(parent, ec)) {
          return "'" + text + "': directory " + parent.string() + " does not exist";
        }
        return "";
      },
      "FILE");
}

/// Threads or local worker processes: [`least`, `max_parallelism()`].
inline CLI::Validator parallelism(int least) {
  return number_in(least, max_parallelism(),
                   " (at most 4 x the " + std::to_string(available_cores()) + " cores this process may use)");
}

}  // namespace contaccum::cli
