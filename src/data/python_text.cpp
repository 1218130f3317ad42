#include "python_text.h"

#include <utf8proc.h>

namespace contaccum {
namespace detail {
namespace {

// The code point starting at byte `i` and its length in bytes (utf8proc's
// decoder; an invalid sequence reads as U+FFFD of one byte).
size_t decode(std::string_view s, size_t i, char32_t& cp) {
  utf8proc_int32_t c = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &c);
  if (n <= 0) {
    cp = 0xFFFD;
    return 1;
  }
  cp = static_cast<char32_t>(c);
  return static_cast<size_t>(n);
}

// The whitespace test is py_space, declared in the header.
// Bytes of the whitespace character at `i`, or 0 when there is none.
size_t space_at(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return py_space(b) ? 1 : 0;
  char32_t cp;
  const size_t len = decode(s, i, cp);
  return py_space(cp) ? len : 0;
}

// s.rstrip(". ")
std::string_view rstrip_dots(std::string_view s) {
  while (!s.empty() && (s.back() == '.' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// a.lower() == b.lower(), with Unicode simple case mapping (Python's full
// mapping differs only for U+0130 and a word-final capital sigma).
bool equal_lowercase(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    char32_t ca, cb;
    i += decode(a, i, ca);
    j += decode(b, j, cb);
    if (ca != cb &&
        utf8proc_tolower(static_cast<utf8proc_int32_t>(ca)) != utf8proc_tolower(static_cast<utf8proc_int32_t>(cb))) {
      return false;
    }
  }
  return i == a.size() && j == b.size();
}

}  // namespace

bool py_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip().
std::string_view py_strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t len = space_at(s, begin);
    if (len == 0) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    // Step back to the start of the last code point.
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (space_at(s, start) != end - start) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// len(s.split()).
int64_t py_word_count(std::string_view s) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const size_t len = space_at(s, i);
    if (len > 0) {
      in_word = false;
      i += len;
    } else {
      if (!in_word) ++words;
      in_word = true;
      ++i;
    }
  }
  return words;
}

// build.py's parse(): `joined` is the description's lines joined by spaces,
// with "\n" for a paragraph break. Then
//   re.sub(r"\s*\n\s*", "\n", text).strip(), re.sub(r"[ \t]+", " ", text).
std::string normalise(std::string_view joined) {
  std::string breaks;
  breaks.reserve(joined.size());
  for (size_t i = 0; i < joined.size();) {
    size_t len = space_at(joined, i);
    if (len == 0) {
      breaks.push_back(joined[i++]);
      continue;
    }
    // A whitespace run becomes one '\n' when it holds one.
    const size_t start = i;
    bool newline = false;
    for (; len > 0; len = i < joined.size() ? space_at(joined, i) : 0) {
      newline = newline || joined[i] == '\n';
      i += len;
    }
    if (newline) {
      breaks.push_back('\n');
    } else {
      breaks.append(joined, start, i - start);
    }
  }
  const std::string_view stripped = py_strip(breaks);
  std::string out;
  out.reserve(stripped.size());
  for (const char c : stripped) {
    const bool blank = c == ' ' || c == '\t';
    if (blank && !out.empty() && out.back() == ' ') continue;
    out.push_back(blank ? ' ' : c);
  }
  return out;
}

// build.py's strip_restatement(): many descriptions open by repeating the
// synopsis; drop that sentence so the task is not a copy test.
std::string_view strip_restatement(std::string_view synopsis, std::string_view text) {
  const size_t dot = text.find(". ");
  if (dot == std::string_view::npos) return text;
  const std::string_view rest = text.substr(dot + 2);
  if (!rest.empty() && equal_lowercase(rstrip_dots(text.substr(0, dot)), rstrip_dots(synopsis))) return rest;
  return text;
}

}  // namespace detail
}  // namespace contaccum
