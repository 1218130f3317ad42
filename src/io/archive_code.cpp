#include "archive_code.h"

#include <c10/util/Exception.h>

#include <cctype>
#include <cstddef>
#include <string_view>

namespace contaccum::detail {
namespace {

// Types nest at most this deep (a Tuple of Optionals of Lists ...).
constexpr int kDeepestType = 8;

// A recursive-descent reader of one line; each `take_*` advances `at` past
// what it accepts and returns false (leaving `at` anywhere) otherwise.
class Line {
 public:
  explicit Line(std::string_view text) : text_(text) {}

  bool done() const { return at_ == text_.size(); }

  bool take(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }

  // [A-Za-z_][A-Za-z0-9_]*
  bool take_identifier() {
    const size_t start = at_;
    while (at_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_')) ++at_;
    return at_ > start && !std::isdigit(static_cast<unsigned char>(text_[start]));
  }

  // A double-quoted name without quotes, backslashes or control characters.
  bool take_quoted() {
    if (!take("\"")) return false;
    while (at_ < text_.size() && text_[at_] != '"') {
      const auto c = static_cast<unsigned char>(text_[at_]);
      if (c == '\\' || c < 0x20) return false;
      ++at_;
    }
    return take("\"");
  }

  // `[]` or `["a", "b", ]`, as LibTorch writes name lists.
  bool take_name_list() {
    if (!take("[")) return false;
    while (!take("]")) {
      if (!take_quoted() || !take(", ")) return false;
    }
    return true;
  }

  bool take_type(int depth = 0) {
    if (depth > kDeepestType) return false;
    for (const char* leaf : {"Tensor", "int", "float", "bool", "str", "NoneType"}) {
      if (take(leaf)) return !continues_identifier();
    }
    if (take("__torch__")) {
      // __torch__.Module, __torch__.___torch_mangle_12.Module, or a module
      // path (__torch__.torch.nn.modules.linear.Linear).
      int parts = 0;
      while (take(".")) {
        if (!take_identifier()) return false;
        ++parts;
      }
      return parts > 0;
    }
    for (const char* generic : {"Tuple[", "List[", "Optional[", "Dict["}) {
      if (!take(generic)) continue;
      do {
        if (!take_type(depth + 1)) return false;
      } while (take(", "));
      return take("]");
    }
    return false;
  }

  // A leaf type's name runs on (`Tensors`, `int8`): not that type.
  bool continues_identifier() const {
    return at_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_');
  }

 private:
  std::string_view text_;
  size_t at_ = 0;
};

bool is_allowed(std::string_view text) {
  Line line(text);
  if (line.take("class ")) return line.take_identifier() && line.take("(Module):") && line.done();
  if (!line.take("  ")) return text.empty();
  if (line.take("__parameters__ = ") || line.take("__buffers__ = ")) return line.take_name_list() && line.done();
  if (line.take("__annotations__")) {
    if (line.take(" = []")) return line.done();
    return line.take("[") && line.take_quoted() && line.take("] = ") && line.take_type() && line.done();
  }
  return line.take_identifier() && line.take(" : ") && line.take_type() && line.done();
}

}  // namespace

bool is_archive_code(const std::string& record) {
  const auto code = record.find("/code/");
  return code != std::string::npos && record.size() > 3 && record.compare(record.size() - 3, 3, ".py") == 0;
}

void check_archive_code(const std::string& text, const std::string& what, const std::string& record) {
  size_t start = 0, number = 1;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    TORCH_CHECK(is_allowed(line), what, ": damaged or not a contaccum archive: record '", record, "' line ", number,
                " is not what LibTorch writes for saved tensors and values: '", std::string(line.substr(0, 200)), "'");
    start = end + 1;
    ++number;
  }
}

}  // namespace contaccum::detail
