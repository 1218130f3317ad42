#pragma once

// Helpers the benchmark programs share (bench/*/).

#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace contaccum::bench {

/// The median of `v` (the mean of the middle two for an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// `text` as a comma-separated list of integers; throws naming `option` and
/// `text` when an item is not one.
inline std::vector<int64_t> parse_list(const std::string& text, const std::string& option) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    TORCH_CHECK(!item.empty() && used == item.size(), option, " must be a comma-separated list of integers, got '",
                text, "'");
    out.push_back(value);
  }
  return out;
}

}  // namespace contaccum::bench
