#include "line_reader.h"

#include <simdjson.h>

#include <cerrno>
#include <cstring>

namespace contaccum {
namespace detail {
namespace {
constexpr size_t kChunk = size_t{4} << 20;
}

LineReader::LineReader(const std::string& path, int64_t max_line_bytes)
    : path_(path), max_line_(static_cast<size_t>(max_line_bytes)) {
  TORCH_CHECK(max_line_bytes > 0, "ReaderOptions::max_line_bytes must be > 0, got ", max_line_bytes);
  file_ = std::fopen(path.c_str(), "rb");
  TORCH_CHECK(file_ != nullptr, path, ": cannot open: ", std::strerror(errno));
  buffer_.resize(max_line_ + kChunk + kPadding);
}

LineReader::~LineReader() {
  if (file_) std::fclose(file_);
}

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  const size_t room = buffer_.size() - kPadding - end_;
  if (room == 0) return true;
  const size_t got = std::fread(buffer_.data() + end_, 1, room, file_);
  TORCH_CHECK(!std::ferror(file_), path_, ": read error: ", std::strerror(errno));
  if (got == 0) eof_ = true;
  end_ += got;
  return got > 0;
}

// Editors on Windows start UTF-8 files with a byte order mark; it is not
// part of the first record.
void LineReader::strip_byte_order_mark(std::string_view& line) const {
  if (line_number_ == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
}

LineReader::Status LineReader::next(std::string_view& line) {
  bool too_long = false;
  for (;;) {
    const char* start = buffer_.data() + begin_;
    const void* nl = std::memchr(start, '\n', end_ - begin_);
    if (nl != nullptr) {
      const size_t len = static_cast<size_t>(static_cast<const char*>(nl) - start);
      begin_ += len + 1;
      ++line_number_;
      if (too_long || len > max_line_) {
        line = {};
        return Status::TooLong;
      }
      line = {start, len};
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      strip_byte_order_mark(line);
      return Status::Line;
    }
    if (end_ - begin_ > max_line_) {
      // Drop what we have of the over-long line and keep looking for its end.
      too_long = true;
      begin_ = end_;
    }
    if (!fill()) {
      if (end_ == begin_) {
        if (!too_long) return Status::End;
        ++line_number_;
        line = {};
        return Status::TooLong;
      }
      // Last line without a newline.
      line = {buffer_.data() + begin_, end_ - begin_};
      begin_ = end_;
      ++line_number_;
      if (too_long) {
        line = {};
        return Status::TooLong;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      strip_byte_order_mark(line);
      return Status::Line;
    }
  }
}

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

bool valid_utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

}  // namespace detail
}  // namespace contaccum
