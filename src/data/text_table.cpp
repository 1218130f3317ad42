#include "contaccum/data/text_table.h"

#include <algorithm>
#include <cstring>

namespace contaccum {

std::string_view StringArena::add(std::string_view s) {
  if (s.empty()) return {};
  if (used_ + s.size() > capacity_) {
    capacity_ = std::max(block_bytes_, s.size());
    blocks_.push_back(std::make_unique<char[]>(capacity_));
    used_ = 0;
  }
  char* dst = blocks_.back().get() + used_;
  std::memcpy(dst, s.data(), s.size());
  used_ += s.size();
  bytes_ += s.size();
  return {dst, s.size()};
}

int64_t TextTable::add(std::string_view id, std::string_view title, std::string_view text) {
  const int64_t row = size();
  std::string generated;
  if (id.empty()) {
    generated = std::to_string(row);
    id = generated;
  }
  if (index_.count(id)) return -1;
  const auto stored_id = arena_.add(id);
  ids_.push_back(stored_id);
  titles_.push_back(arena_.add(title));
  texts_.push_back(arena_.add(text));
  index_.emplace(stored_id, row);
  return row;
}

std::string TextTable::full_text(int64_t row) const {
  const auto t = title(row), x = text(row);
  if (t.empty()) return std::string(x);
  std::string out;
  out.reserve(t.size() + 1 + x.size());
  out.append(t).append(" ").append(x);
  return out;
}

int64_t TextTable::find(std::string_view id) const {
  const auto it = index_.find(id);
  return it == index_.end() ? -1 : it->second;
}

}  // namespace contaccum
