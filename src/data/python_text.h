#pragma once
// Internal: text as Python sees it, for the Debian data set to match
// build.py byte for byte. build.py's normalisation uses str.strip(), split()
// and the regex class \s, all of which mean str.isspace(). Inputs are valid
// UTF-8 (the reader checks). Not installed.

#include <cstdint>
#include <string>
#include <string_view>

namespace contaccum {
namespace detail {

/// Python's str.isspace() for one code point (the same set since Unicode 6.3).
bool py_space(char32_t c);
/// Python's str.strip().
std::string_view py_strip(std::string_view s);
/// len(s.split()).
int64_t py_word_count(std::string_view s);
/// build.py's parse(): `joined` is a description's lines joined by spaces,
/// with "\n" for a paragraph break; then
/// `re.sub(r"\s*\n\s*", "\n", text).strip()`, `re.sub(r"[ \t]+", " ", text)`.
std::string normalise(std::string_view joined);
/// build.py's strip_restatement(): drops a first sentence that repeats the
/// synopsis (compared lower-cased, trailing dots and blanks ignored).
std::string_view strip_restatement(std::string_view synopsis, std::string_view text);

}  // namespace detail
}  // namespace contaccum
