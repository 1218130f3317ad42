#pragma once
// Internal: streaming line reading and bad-record bookkeeping shared by the
// readers. Not installed.

#include "contaccum/data/reader_options.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {
namespace detail {

/// Reads a file line by line through one reusable buffer. Every returned line
/// is followed in memory by at least `kPadding` readable bytes, so simdjson
/// can parse it in place.
class LineReader {
 public:
  static constexpr size_t kPadding = 64;
  enum class Status { Line, TooLong, End };

  LineReader(const std::string& path, int64_t max_line_bytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  /// Next line without its '\n' (and a trailing '\r'; the first line without
  /// a UTF-8 byte order mark). `TooLong`: the line
  /// exceeded the limit and was skipped (`line` is empty).
  Status next(std::string_view& line);
  /// 1-based number of the line last returned.
  int64_t line_number() const { return line_number_; }
  /// Bytes the buffer holds after the line last returned (>= kPadding).
  size_t capacity_after(std::string_view line) const {
    return static_cast<size_t>(buffer_.data() + buffer_.size() - line.data());
  }

 private:
  bool fill();  // false at end of file
  void strip_byte_order_mark(std::string_view& line) const;

  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
  size_t max_line_;
  bool eof_ = false;
  int64_t line_number_ = 0;
};

/// The one line loop of the readers: calls `on_line(line, number)` for every
/// line of `reader` and `on_too_long(number)` for every line over its limit
/// (skipped unread), counting both in `report.lines`.
template <typename OnLine, typename OnTooLong>
void for_each_line(LineReader& reader, ReadReport& report, OnLine&& on_line, OnTooLong&& on_too_long) {
  std::string_view line;
  for (auto status = reader.next(line); status != LineReader::Status::End; status = reader.next(line)) {
    report.lines += 1;
    if (status == LineReader::Status::TooLong) {
      on_too_long(reader.line_number());
    } else {
      on_line(line, reader.line_number());
    }
  }
}

/// Applies `ReaderOptions::on_bad_record`: throws "path:line: problem" or
/// counts the skip.
class BadRecords {
 public:
  BadRecords(std::string path, const ReaderOptions& options, ReadReport& report)
      : path_(std::move(path)), options_(options), report_(report) {}

  template <typename... Args>
  void operator()(int64_t line, const Args&... problem) {
    auto message = c10::str(path_, ":", line, ": ", problem...);
    TORCH_CHECK(options_.on_bad_record() == OnBadRecord::Skip, message);
    report_.skipped += 1;
    if (report_.problems.size() < 20) report_.problems.push_back(std::move(message));
  }
  const std::string& path() const { return path_; }
  /// Reports the over-long line `line` (the usual `on_too_long`).
  void too_long(int64_t line) { (*this)(line, "line longer than max_line_bytes (", options_.max_line_bytes(), ")"); }

 private:
  std::string path_;
  ReaderOptions options_;
  ReadReport& report_;
};

/// Splits `line` on '\t'.
std::vector<std::string_view> split_tabs(std::string_view line);

/// True when `s` is valid UTF-8.
bool valid_utf8(std::string_view s);

}  // namespace detail
}  // namespace contaccum
