#pragma once
// Internal: the JSONL loop of the readers and the BEIR record they share
// (`read_beir_corpus`, `CorpusStream`). Not installed.

#include "line_reader.h"

#include <simdjson.h>

#include <string>
#include <string_view>

namespace contaccum {
namespace detail {

inline std::string json_problem(const char* what, simdjson::error_code err) {
  if (err == simdjson::NO_SUCH_FIELD) return c10::str("missing field '", what, "'");
  if (err == simdjson::INCORRECT_TYPE) return c10::str("field '", what, "' has the wrong type");
  if (err == simdjson::UTF8_ERROR) return "invalid UTF-8";
  return c10::str("malformed JSON at '", what, "' (", simdjson::error_message(err), ")");
}

// Reads a string field; `required` fields must be present, `non_empty` ones
// must not be empty. Returns a problem, or "" on success.
inline std::string string_field(simdjson::ondemand::object& obj, const char* name, std::string_view& out, bool required,
                                bool non_empty) {
  out = {};
  auto err = obj[name].get_string().get(out);
  if (err == simdjson::NO_SUCH_FIELD && !required) return "";
  if (err) return json_problem(name, err);
  if (non_empty && out.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return c10::str("empty '", name, "'");
  }
  return "";
}

// Streams a JSONL file, calling `fn(object, line)` -> problem ("" = kept).
template <typename Fn>
void for_each_json_line(const std::string& path, const ReaderOptions& options, ReadReport& report, Fn&& fn) {
  LineReader reader(path, options.max_line_bytes());
  BadRecords bad(path, options, report);
  simdjson::ondemand::parser parser;
  auto on_line = [&](std::string_view line, int64_t number) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;  // blank line
    simdjson::ondemand::document doc;
    auto err = parser.iterate(line.data(), line.size(), reader.capacity_after(line)).get(doc);
    simdjson::ondemand::object obj;
    if (!err) err = doc.get_object().get(obj);
    if (err) {
      bad(number,
          err == simdjson::INCORRECT_TYPE ? std::string("expected a JSON object") : json_problem("record", err));
      return;
    }
    const auto problem = fn(obj, number);
    if (problem.empty()) {
      report.records += 1;
    } else {
      bad(number, problem);
    }
  };
  detail::for_each_line(reader, report, on_line, [&](int64_t number) { bad.too_long(number); });
}

/// One BEIR record. The parser reuses its string buffer per field, so each
/// field is copied before the next is read.
struct BeirRecord {
  std::string id, title;
  std::string_view text;  // valid until the next line is parsed
};

/// Reads `_id` (required, non-empty), `title` (optional, only when `titles`)
/// and `text` (required, non-empty). Returns a problem, or "".
inline std::string read_beir_record(simdjson::ondemand::object& obj, bool titles, BeirRecord& out) {
  std::string_view id, title;
  // Field order in the file is free; ondemand looks each one up.
  if (auto p = string_field(obj, "_id", id, true, true); !p.empty()) return p;
  out.id.assign(id);
  out.title.clear();
  if (titles) {
    if (auto p = string_field(obj, "title", title, false, false); !p.empty()) return p;
    out.title.assign(title);
  }
  return string_field(obj, "text", out.text, true, true);
}

}  // namespace detail
}  // namespace contaccum
