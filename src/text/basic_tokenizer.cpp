#include "contaccum/text/basic_tokenizer.h"

#include <c10/util/Exception.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdio>

namespace contaccum {

namespace {

enum class CharKind : uint8_t { Keep, Drop, Space, Cjk };

// ASCII is nearly all text in practice: classify it with tables, not utf8proc.
constexpr std::array<CharKind, 128> make_ascii_kinds() {
  std::array<CharKind, 128> kinds{};
  for (int c = 0; c < 128; ++c) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') {
      kinds[c] = CharKind::Space;
    } else if (c < 0x20 || c == 0x7F) {
      // Category Cc; note that VT and FF are dropped, not spaces, as in HF.
      kinds[c] = CharKind::Drop;
    } else {
      kinds[c] = CharKind::Keep;
    }
  }
  return kinds;
}
constexpr auto kAsciiKinds = make_ascii_kinds();

constexpr std::array<bool, 128> make_ascii_punct() {
  std::array<bool, 128> punct{};
  for (int c = 0; c < 128; ++c) {
    punct[c] = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  }
  return punct;
}
constexpr auto kAsciiPunct = make_ascii_punct();

// Canonical (de)composition; STABLE makes composition honour the composition
// exclusions, as NFC requires.
constexpr auto kDecompose = static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | UTF8PROC_STABLE);
constexpr auto kCompose = static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE);

// The "Chinese character" blocks of BERT's tokenizer: CJK Unified Ideographs
// and their extensions and compatibility blocks. Hangul, kana etc. are not in
// them and are tokenized like any other script.
bool is_cjk(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

CharKind classify(int32_t cp) {
  if (cp < 0x80) return kAsciiKinds[cp];
  if (cp == 0xFFFD) return CharKind::Drop;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
      return CharKind::Drop;
    case UTF8PROC_CATEGORY_ZS:
    // Not whitespace to HF's cleaning, but Python's str.split (its next step)
    // splits on them.
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return CharKind::Space;
    default:
      return is_cjk(cp) ? CharKind::Cjk : CharKind::Keep;
  }
}

bool is_punct(int32_t cp) {
  if (cp < 0x80) return kAsciiPunct[cp];
  const auto cat = utf8proc_category(cp);
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

// Python's Cased property: a cased category, a case mapping, or one of the
// Other_Lowercase/Other_Uppercase characters that have neither (those that
// are modifier letters are left out: being case-ignorable too, they never
// decide a sigma).
bool is_cased(int32_t cp) {
  const auto cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
         utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp || cp == 0xAA || cp == 0xBA ||
         (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}

// Python's Case_Ignorable: categories Mn, Me, Cf, Lm, Sk and the Word_Break
// classes MidLetter, MidNumLet and Single_Quote.
bool is_case_ignorable(int32_t cp) {
  switch (cp) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
      return true;
    default:
      break;
  }
  const auto cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK;
}

// Python lowers U+03A3 to final sigma when a cased letter precedes it and none
// follows it (skipping case-ignorable characters both ways), within the
// string being lowered: here the whitespace-delimited word.
bool is_final_sigma(const std::vector<int32_t>& cps, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(cps[j - 1])) --j;
  if (j == 0 || !is_cased(cps[j - 1])) return false;
  size_t k = i + 1;
  while (k < cps.size() && is_case_ignorable(cps[k])) ++k;
  return k == cps.size() || !is_cased(cps[k]);
}

void append_utf8(std::string& out, int32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto len = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
}

// Turns words (whitespace-delimited, already cleaned) into the final tokens.
// Holds the buffers one `tokenize` call reuses from word to word.
class WordProcessor {
 public:
  WordProcessor(const BasicTokenizerOptions& options, const std::function<bool(std::string_view)>& emit)
      : options_(options), emit_(emit), lower_(options.lower_case()), strip_(options.strips_accents()) {}

  void append(const char* bytes, size_t len, bool ascii) {
    word_.append(bytes, len);
    ascii_ = ascii_ && ascii;
  }
  void append(char byte) { word_.push_back(byte); }

  // Emits the tokens of the pending word; false once `emit` asked to stop.
  bool flush() {
    if (word_.empty()) return true;
    bool go_on;
    if (!options_.never_split().empty() && options_.never_split().count(word_) != 0) {
      go_on = emit_(word_);
    } else if (ascii_) {
      go_on = flush_ascii();
    } else {
      go_on = flush_unicode();
    }
    word_.clear();
    ascii_ = true;
    return go_on;
  }

 private:
  bool flush_ascii() {
    if (lower_) {
      for (auto& c : word_) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
      }
    }
    const std::string_view w(word_);
    size_t start = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      if (!kAsciiPunct[static_cast<uint8_t>(w[i])]) continue;
      if (i > start && !emit_(w.substr(start, i - start))) return false;
      if (!emit_(w.substr(i, 1))) return false;
      start = i + 1;
    }
    return start == w.size() || emit_(w.substr(start));
  }

  bool flush_unicode() {
    // NFC first, as Hugging Face does since it normalizes the whole text; a
    // word at a time gives the same result because whitespace never composes.
    // The word was validated while it was read.
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(word_.data());
    const auto n = static_cast<utf8proc_ssize_t>(word_.size());
    cps_.resize(word_.size() + 8);
    auto len = utf8proc_decompose(p, n, cps_.data(), static_cast<utf8proc_ssize_t>(cps_.size()), kDecompose);
    if (len > static_cast<utf8proc_ssize_t>(cps_.size())) {
      cps_.resize(static_cast<size_t>(len));
      len = utf8proc_decompose(p, n, cps_.data(), len, kDecompose);
    }
    TORCH_INTERNAL_ASSERT(len >= 0, "utf8proc_decompose failed: ", utf8proc_errmsg(len));
    len = utf8proc_normalize_utf32(cps_.data(), len, kCompose);
    TORCH_INTERNAL_ASSERT(len >= 0, "utf8proc_normalize_utf32 failed: ", utf8proc_errmsg(len));
    cps_.resize(static_cast<size_t>(len));
    if (lower_) lower();
    if (strip_) strip_accents();

    out_.clear();
    for (const int32_t cp : cps_) {
      if (!is_punct(cp)) {
        append_utf8(out_, cp);
        continue;
      }
      if (!out_.empty() && !emit_(out_)) return false;
      out_.clear();
      append_utf8(out_, cp);
      if (!emit_(out_)) return false;
      out_.clear();
    }
    return out_.empty() || emit_(out_);
  }

  void lower() {
    tmp_.clear();
    for (size_t i = 0; i < cps_.size(); ++i) {
      const int32_t cp = cps_[i];
      if (cp == 0x130) {
        // The only unconditional multi-character lower-case mapping.
        tmp_.push_back('i');
        tmp_.push_back(0x307);
      } else if (cp == 0x3A3) {
        tmp_.push_back(is_final_sigma(cps_, i) ? 0x3C2 : 0x3C3);
      } else {
        tmp_.push_back(utf8proc_tolower(cp));
      }
    }
    cps_.swap(tmp_);
  }

  // NFD (full canonical decomposition, then canonical ordering of the
  // combining marks), then drop every nonspacing mark.
  void strip_accents() {
    tmp_.clear();
    bool reorder = false;
    for (const int32_t cp : cps_) {
      utf8proc_int32_t buf[16];
      int boundclass = 0;
      const auto len = utf8proc_decompose_char(cp, buf, 16, UTF8PROC_DECOMPOSE, &boundclass);
      TORCH_INTERNAL_ASSERT(len > 0 && len <= 16, "utf8proc_decompose_char failed on U+", cp);
      for (utf8proc_ssize_t k = 0; k < len; ++k) {
        if (!reorder && !tmp_.empty() && utf8proc_get_property(buf[k])->combining_class != 0 &&
            utf8proc_get_property(tmp_.back())->combining_class > utf8proc_get_property(buf[k])->combining_class) {
          reorder = true;
        }
        tmp_.push_back(buf[k]);
      }
    }
    if (reorder) {
      auto ccc = [](int32_t c) { return utf8proc_get_property(c)->combining_class; };
      for (size_t i = 0; i < tmp_.size();) {
        if (ccc(tmp_[i]) == 0) {
          ++i;
          continue;
        }
        size_t j = i;
        while (j < tmp_.size() && ccc(tmp_[j]) != 0) ++j;
        std::stable_sort(tmp_.begin() + i, tmp_.begin() + j, [&](int32_t a, int32_t b) { return ccc(a) < ccc(b); });
        i = j;
      }
    }
    cps_.clear();
    for (const int32_t cp : tmp_) {
      if (utf8proc_category(cp) != UTF8PROC_CATEGORY_MN) cps_.push_back(cp);
    }
  }

  const BasicTokenizerOptions& options_;
  const std::function<bool(std::string_view)>& emit_;
  const bool lower_;
  const bool strip_;
  std::string word_;
  bool ascii_ = true;
  std::vector<int32_t> cps_, tmp_;
  std::string out_;
};

}  // namespace

BasicTokenizer::BasicTokenizer(BasicTokenizerOptions options) : options_(std::move(options)) {}

std::vector<std::string> BasicTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> tokens;
  tokenize(text, [&tokens](std::string_view token) {
    tokens.emplace_back(token);
    return true;
  });
  return tokens;
}

void BasicTokenizer::tokenize(std::string_view text, const std::function<bool(std::string_view)>& emit) const {
  WordProcessor words(options_, emit);
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  const auto n = static_cast<utf8proc_ssize_t>(text.size());
  const bool cjk = options_.tokenize_chinese_chars();
  utf8proc_ssize_t i = 0;
  while (i < n) {
    const auto byte = p[i];
    if (byte < 0x80) {
      switch (kAsciiKinds[byte]) {
        case CharKind::Keep:
          words.append(static_cast<char>(byte));
          break;
        case CharKind::Space:
          if (!words.flush()) return;
          break;
        default:
          break;
      }
      ++i;
      continue;
    }
    utf8proc_int32_t cp;
    const auto len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned>(byte));
      TORCH_CHECK(false, "BasicTokenizer: invalid UTF-8 at byte offset ", i, " (byte ", hex, ")");
    }
    const char* bytes = text.data() + i;
    switch (classify(cp)) {
      case CharKind::Keep:
        words.append(bytes, static_cast<size_t>(len), false);
        break;
      case CharKind::Space:
        if (!words.flush()) return;
        break;
      case CharKind::Cjk:
        if (cjk) {
          if (!words.flush()) return;
          words.append(bytes, static_cast<size_t>(len), false);
          if (!words.flush()) return;
        } else {
          words.append(bytes, static_cast<size_t>(len), false);
        }
        break;
      case CharKind::Drop:
        break;
    }
    i += len;
  }
  words.flush();
}

}  // namespace contaccum
