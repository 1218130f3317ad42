#pragma once
// Range checks for command-line options whose messages name the value and a
// readable range (CLI11's own write the largest double out in 309 digits).
// CLI11 puts the option's name in front of each message.

#include <contaccum/core/compute_threads.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <sstream>
#include <string>

namespace contaccum::cli {

/// A number in [lo, hi] (either bound infinite: open on that side).
inline CLI::Validator number_in(double lo, double hi, std::string why = "") {
  auto describe = [lo, hi] {
    std::ostringstream out;
    if (std::isinf(hi)) {
      out << ">= " << lo;
    } else {
      out << "in [" << lo << ", " << hi << "]";
    }
    return out.str();
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
        if (used != text.size() || !std::isfinite(value)) return "'" + text + "' is not a number";
        if (value < lo || value > hi) return "must be " + describe() + why + ", got " + text;
        return "";
      },
      describe());
}

/// > 0 (integers: >= 1).
inline CLI::Validator positive() { return number_in(1, HUGE_VAL); }
/// >= 0.
inline CLI::Validator non_negative() { return number_in(0, HUGE_VAL); }
/// Threads or local worker processes: [`least`, `max_parallelism()`].
inline CLI::Validator parallelism(int least) {
  return number_in(least, max_parallelism(),
                   " (at most 4 x the " + std::to_string(available_cores()) + " cores this process may use)");
}

}  // namespace contaccum::cli
