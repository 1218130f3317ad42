#pragma once
// Internal: what the Debian reader and the data set builder agree a package
// name is. Not installed.

#include <algorithm>
#include <string_view>

namespace contaccum {
namespace detail {

/// Package names become ids in TSV files: non-empty, no whitespace or
/// control characters.
inline bool valid_package(std::string_view name) {
  return !name.empty() && std::none_of(name.begin(), name.end(),
                                       [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F; });
}

}  // namespace detail
}  // namespace contaccum
