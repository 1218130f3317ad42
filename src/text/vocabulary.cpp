#include "contaccum/text/vocabulary.h"

#include "contaccum/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <unistd.h>
#include <utf8proc.h>

#include <filesystem>
#include <fstream>
#include <unordered_map>

namespace contaccum {

struct Vocabulary::Impl {
  std::vector<std::string> tokens;
  // Views into `tokens`: lookups by string_view then allocate nothing. Impl
  // is never copied or moved once indexed (it lives behind a shared_ptr),
  // so the views stay valid.
  std::unordered_map<std::string_view, int64_t> index;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
};

namespace {

// Byte offset of the first invalid UTF-8 sequence in `s`, or -1.
int64_t invalid_utf8_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  const auto n = static_cast<utf8proc_ssize_t>(s.size());
  utf8proc_ssize_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    utf8proc_int32_t cp;
    const auto len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) return i;
    i += len;
  }
  return -1;
}

}  // namespace

Vocabulary::Vocabulary() : impl_(std::make_shared<Impl>()) {}

Vocabulary::Vocabulary(std::vector<std::string> tokens) {
  auto impl = std::make_shared<Impl>();
  impl->tokens = std::move(tokens);
  impl->index.reserve(impl->tokens.size());
  for (size_t i = 0; i < impl->tokens.size(); ++i) {
    const auto& t = impl->tokens[i];
    TORCH_CHECK(!t.empty(), "Vocabulary: token ", i, " is empty");
    TORCH_CHECK(t.find_first_of("\r\n") == std::string::npos, "Vocabulary: token ", i,
                " contains a line break, which a vocab.txt cannot hold");
    const auto bad = invalid_utf8_offset(t);
    TORCH_CHECK(bad < 0, "Vocabulary: token ", i, " is invalid UTF-8 (at byte ", bad, ")");
    const auto inserted = impl->index.emplace(t, static_cast<int64_t>(i));
    TORCH_CHECK(inserted.second, "Vocabulary: token ", i, " '", t, "' duplicates token ", inserted.first->second);
  }
  impl_ = std::move(impl);
}

Vocabulary Vocabulary::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.is_open(), "Vocabulary: cannot open '", path, "' for reading");
  auto impl = std::make_shared<Impl>();
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    impl->tokens.push_back(std::move(line));
  }
  TORCH_CHECK(!in.bad(), "Vocabulary: error while reading '", path, "'");
  impl->index.reserve(impl->tokens.size());
  for (size_t i = 0; i < impl->tokens.size(); ++i) {
    const auto& t = impl->tokens[i];
    const size_t line_no = i + 1;
    TORCH_CHECK(!t.empty(), "Vocabulary: ", path, ":", line_no, ": empty line (a token must not be empty)");
    TORCH_CHECK(t.find('\r') == std::string::npos, "Vocabulary: ", path, ":", line_no,
                ": stray carriage return inside a token");
    const auto bad = invalid_utf8_offset(t);
    TORCH_CHECK(bad < 0, "Vocabulary: ", path, ":", line_no, ": invalid UTF-8 (at byte ", bad, " of the line)");
    const auto inserted = impl->index.emplace(t, static_cast<int64_t>(i));
    TORCH_CHECK(inserted.second, "Vocabulary: ", path, ":", line_no, ": duplicate token '", t, "' (first on line ",
                inserted.first->second + 1, ")");
  }
  Vocabulary vocab;
  vocab.impl_ = std::move(impl);
  return vocab;
}

void Vocabulary::save(const std::string& path) const {
  std::string text;
  for (const auto& t : impl_->tokens) text.append(t).push_back('\n');
  try {
    AtomicFile file(path);
    file.write(text);
    file.commit();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "Vocabulary::save: ", e.what_without_backtrace());
  }
}

int64_t Vocabulary::size() const { return static_cast<int64_t>(impl_->tokens.size()); }

std::optional<int64_t> Vocabulary::id(std::string_view token) const {
  const auto it = impl_->index.find(token);
  if (it == impl_->index.end()) return std::nullopt;
  return it->second;
}

const std::string& Vocabulary::token(int64_t id) const {
  TORCH_CHECK(id >= 0 && id < size(), "Vocabulary::token: id must be in [0, ", size(), "), got ", id);
  return impl_->tokens[static_cast<size_t>(id)];
}

const std::vector<std::string>& Vocabulary::tokens() const { return impl_->tokens; }

}  // namespace contaccum
