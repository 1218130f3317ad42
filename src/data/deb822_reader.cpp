// The deb822 parser behind read_debian_descriptions: Debian's
// Translation-en and Packages files, stanza by stanza.
#include "contaccum/data/debian_descriptions.h"

#include "debian_package.h"
#include "line_reader.h"
#include "python_text.h"

#include <algorithm>

namespace contaccum {
namespace {

using detail::BadRecords;
using detail::LineReader;
using detail::normalise;
using detail::py_strip;
using detail::valid_package;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

// The start of a line for a message, cut at a code point boundary.
std::string_view excerpt(std::string_view line) {
  if (line.size() <= 40) return line;
  size_t end = 40;
  while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
  return line.substr(0, end);
}

}  // namespace

std::vector<DebianDescription> read_debian_descriptions(const std::string& path, const ReaderOptions& options,
                                                        ReadReport* report_ptr) {
  ReadReport local;
  ReadReport& report = report_ptr ? (*report_ptr = ReadReport{}) : local;
  LineReader reader(path, options.max_line_bytes());
  BadRecords bad(path, options, report);

  enum class Field { None, Description, Other };
  struct Stanza {
    int64_t first_line = 0;  // 0: between stanzas
    bool skipping = false;
    Field open = Field::None;  // the field continuation lines belong to
    bool has_package = false, has_description = false, has_text = false;
    std::string package, synopsis, joined;
  } stanza;

  std::vector<DebianDescription> out;
  auto fail = [&](int64_t line, const auto&... problem) {
    bad(line, problem...);
    stanza.skipping = true;
  };
  auto finish = [&] {
    if (stanza.first_line == 0) return;
    if (!stanza.skipping) {
      if (!stanza.has_package) {
        bad(stanza.first_line, "stanza without a Package field");
      } else if (!stanza.has_description) {
        bad(stanza.first_line, "stanza of package '", stanza.package, "' without a Description field");
      } else {
        out.push_back({std::move(stanza.package), std::move(stanza.synopsis), normalise(stanza.joined)});
        report.records += 1;
      }
    }
    stanza = Stanza{};
  };

  auto on_too_long = [&](int64_t number) {
    if (stanza.first_line == 0) stanza.first_line = number;
    if (!stanza.skipping) fail(number, "line longer than max_line_bytes (", options.max_line_bytes(), ")");
  };
  auto on_line = [&](std::string_view line, int64_t number) {
    const bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    // A line of blanks ends a stanza unless a field is open: build.py reads
    // it as an empty continuation line, i.e. a paragraph break.
    if (line.empty() || (stanza.open == Field::None && line.find_first_not_of(" \t") == std::string_view::npos)) {
      finish();
      return;
    }
    if (stanza.first_line == 0) stanza.first_line = number;
    if (stanza.skipping) {
      if (!continuation) stanza.open = Field::Other;
      return;
    }
    if (!detail::valid_utf8(line)) {
      fail(number, "invalid UTF-8");
      return;
    }
    if (continuation) {
      if (stanza.open == Field::None) {
        fail(number, "continuation line before any field");
      } else if (stanza.open == Field::Description) {
        std::string_view part = py_strip(line.substr(1));
        if (part == ".") part = {};
        if (stanza.has_text) stanza.joined.push_back(' ');
        stanza.joined.append(part.empty() ? std::string_view("\n") : part);
        stanza.has_text = true;
      }
      return;
    }
    const size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    if (colon == std::string_view::npos || name.empty() || name.find_first_of(" \t") != std::string_view::npos) {
      fail(number, "expected 'Field: value' or a continuation line, got '", excerpt(line), "'");
      return;
    }
    const std::string_view value = py_strip(line.substr(colon + 1));
    stanza.open = Field::Other;
    if (iequals(name, "Package")) {
      if (stanza.has_package) {
        fail(number, "repeated Package field");
      } else if (!valid_package(value)) {
        fail(number, "package name must be non-empty without whitespace, got '", excerpt(value), "'");
      } else {
        stanza.package.assign(value);
        stanza.has_package = true;
      }
    } else if (iequals(name, "Description") || iequals(name, "Description-en")) {
      if (stanza.has_description) {
        fail(number, "repeated description field");
      } else {
        stanza.synopsis.assign(value);
        stanza.has_description = true;
        stanza.open = Field::Description;
      }
    }
  };
  detail::for_each_line(reader, report, on_line, on_too_long);
  finish();
  return out;
}

}  // namespace contaccum
