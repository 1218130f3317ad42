#include "contaccum/text/wordpiece_tokenizer.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/types.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace contaccum {

namespace {

size_t count_chars(std::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

// An open-addressing hash table from strings to ids: a flat array of 16-byte
// slots plus one buffer of key bytes, no node allocations or divisions. A
// 30k-token vocabulary takes about 1 MiB and so stays in cache, which is
// what makes WordPiece's many lookups of candidate pieces cheap.
class PieceTable {
 public:
  void build(const std::vector<std::pair<std::string_view, int64_t>>& entries) {
    size_t capacity = 16;
    while (capacity < 2 * entries.size()) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    keys_.clear();
    for (const auto& e : entries) {
      const uint64_t h = hash(e.first);
      size_t i = h & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = Slot{tag(h), static_cast<int32_t>(e.second), static_cast<uint32_t>(keys_.size()),
                       static_cast<uint32_t>(e.first.size())};
      keys_.append(e.first);
    }
  }

  // The id of `key`, or -1.
  int64_t find(std::string_view key) const {
    const uint64_t h = hash(key);
    const uint32_t t = tag(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == t && s.length == key.size() && std::memcmp(keys_.data() + s.offset, key.data(), key.size()) == 0) {
        return s.id;
      }
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;
    int32_t id = -1;
    uint32_t offset = 0;
    uint32_t length = 0;
  };

  // The slot index comes from the low bits; the tag from the high ones.
  static uint32_t tag(uint64_t h) { return static_cast<uint32_t>(h >> 32); }
  static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
  }
  // Eight bytes at a time; probe lengths depend only on the vocabulary, so
  // input text cannot degrade it.
  static uint64_t hash(std::string_view key) {
    const char* p = key.data();
    size_t n = key.size();
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
      uint64_t v;
      std::memcpy(&v, p, 8);
      h = mix(h ^ v) * 0xC4CEB9FE1A85EC53ull;
      p += 8;
      n -= 8;
    }
    uint64_t v = 0;
    if (n > 0) std::memcpy(&v, p, n);
    return mix(h ^ v);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::string keys_;
};

int64_t special_id(const Vocabulary& vocab, const std::string& token, const char* option) {
  const auto id = vocab.id(token);
  TORCH_CHECK(id.has_value(), "WordPieceTokenizer: ", option, " '", token, "' is not in the vocabulary (", vocab.size(),
              " tokens)");
  return *id;
}

int64_t checked_max_length(const WordPieceTokenizerOptions& options, std::optional<int64_t> max_length) {
  const int64_t limit = max_length.value_or(options.max_length());
  const bool special = options.add_special_tokens();
  TORCH_CHECK(limit >= (special ? 2 : 1), "WordPieceTokenizer: max_length must be >= ", special ? 2 : 1,
              special ? " (room for [CLS] and [SEP])" : "", ", got ", limit);
  return limit;
}

}  // namespace

struct WordPieceTokenizer::Pieces {
  // Every token, for the piece that starts a word.
  PieceTable start;
  // The "##" tokens keyed without their "##": a piece inside a word is
  // looked up as a view into the word, with no string built.
  PieceTable continuation;
  // Longest token, in characters, that can start / continue a word: longer
  // candidates need no lookup.
  size_t max_start_chars = 0, max_continuation_chars = 0;
};

WordPieceTokenizer::WordPieceTokenizer(Vocabulary vocab, WordPieceTokenizerOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)), basic_(options_.basic()) {
  TORCH_CHECK(options_.max_input_chars_per_word() > 0,
              "WordPieceTokenizerOptions::max_input_chars_per_word must be > 0, got ",
              options_.max_input_chars_per_word());
  checked_max_length(options_, std::nullopt);
  cls_id_ = special_id(vocab_, options_.cls_token(), "cls_token");
  sep_id_ = special_id(vocab_, options_.sep_token(), "sep_token");
  pad_id_ = special_id(vocab_, options_.pad_token(), "pad_token");
  unk_id_ = special_id(vocab_, options_.unk_token(), "unk_token");
  // The lookup tables hold ids and key offsets as 32-bit integers.
  TORCH_CHECK(vocab_.size() < std::numeric_limits<int32_t>::max(), "WordPieceTokenizer: vocabulary of ", vocab_.size(),
              " tokens is too large");
  auto pieces = std::make_shared<Pieces>();
  std::vector<std::pair<std::string_view, int64_t>> start, continuation;
  const auto& tokens = vocab_.tokens();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string_view t(tokens[i]);
    start.emplace_back(t, static_cast<int64_t>(i));
    pieces->max_start_chars = std::max(pieces->max_start_chars, count_chars(t));
    if (t.size() > 2 && t.compare(0, 2, "##") == 0) {
      continuation.emplace_back(t.substr(2), static_cast<int64_t>(i));
      pieces->max_continuation_chars = std::max(pieces->max_continuation_chars, count_chars(t) - 2);
    }
  }
  pieces->start.build(start);
  pieces->continuation.build(continuation);
  pieces_ = std::move(pieces);
}

WordPieceTokenizer::WordPieceTokenizer(const std::string& vocab_path, WordPieceTokenizerOptions options)
    : WordPieceTokenizer(Vocabulary::load(vocab_path), std::move(options)) {}

void WordPieceTokenizer::word_pieces(std::string_view word, std::vector<int64_t>& out,
                                     std::vector<uint32_t>& offsets) const {
  offsets.clear();
  for (size_t i = 0; i < word.size(); ++i) {
    if ((static_cast<uint8_t>(word[i]) & 0xC0) != 0x80) offsets.push_back(static_cast<uint32_t>(i));
  }
  const size_t chars = offsets.size();
  offsets.push_back(static_cast<uint32_t>(word.size()));
  if (chars > static_cast<size_t>(options_.max_input_chars_per_word())) {
    out.push_back(unk_id_);
    return;
  }
  const size_t mark = out.size();
  const Pieces& pieces = *pieces_;
  size_t start = 0;
  while (start < chars) {
    const bool first = start == 0;
    const PieceTable& table = first ? pieces.start : pieces.continuation;
    size_t end = std::min(chars, start + (first ? pieces.max_start_chars : pieces.max_continuation_chars));
    int64_t found = -1;
    for (; end > start; --end) {
      found = table.find(word.substr(offsets[start], offsets[end] - offsets[start]));
      if (found >= 0) break;
    }
    if (found < 0) {
      // As Hugging Face: one unknown piece makes the whole word unknown.
      out.resize(mark);
      out.push_back(unk_id_);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::append_pieces(std::string_view text, size_t budget, std::vector<int64_t>& ids) const {
  if (budget == 0) return;
  const size_t limit = ids.size() + budget;
  std::vector<int64_t> pieces;
  std::vector<uint32_t> offsets;
  basic_.tokenize(text, [&](std::string_view word) {
    pieces.clear();
    word_pieces(word, pieces, offsets);
    const size_t take = std::min(pieces.size(), limit - ids.size());
    ids.insert(ids.end(), pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(take));
    return ids.size() < limit;
  });
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<int64_t> ids;
  append_pieces(text, std::numeric_limits<size_t>::max() / 2, ids);
  return ids_to_tokens(ids);
}

std::vector<int64_t> WordPieceTokenizer::encode(std::string_view text, std::optional<int64_t> max_length) const {
  const int64_t limit = checked_max_length(options_, max_length);
  std::vector<int64_t> ids;
  if (options_.add_special_tokens()) {
    ids.push_back(cls_id_);
    append_pieces(text, static_cast<size_t>(limit - 2), ids);
    ids.push_back(sep_id_);
  } else {
    append_pieces(text, static_cast<size_t>(limit), ids);
  }
  return ids;
}

EncoderInput WordPieceTokenizer::encode_batch(const std::vector<std::string>& texts,
                                              std::optional<int64_t> max_length) const {
  const auto n = static_cast<int64_t>(texts.size());
  const int64_t limit = checked_max_length(options_, max_length);
  std::vector<std::vector<int64_t>> rows(texts.size());
  // Short texts tokenize in microseconds: only large batches are worth
  // threads.
  at::parallel_for(0, n, /*grain_size=*/64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) rows[i] = encode(texts[i], limit);
  });
  size_t seq = 0;
  for (const auto& row : rows) seq = std::max(seq, row.size());
  const auto len = static_cast<int64_t>(seq);
  EncoderInput out;
  out.input_ids = torch::full({n, len}, pad_id_, torch::kLong);
  out.attention_mask = torch::zeros({n, len}, torch::kLong);
  auto* ids = out.input_ids.data_ptr<int64_t>();
  auto* mask = out.attention_mask.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& row = rows[i];
    if (!row.empty()) std::memcpy(ids + i * len, row.data(), row.size() * sizeof(int64_t));
    std::fill(mask + i * len, mask + i * len + static_cast<int64_t>(row.size()), int64_t{1});
  }
  out.extras["token_type_ids"] = torch::zeros({n, len}, torch::kLong);
  return out;
}

std::vector<std::string> WordPieceTokenizer::ids_to_tokens(const std::vector<int64_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const auto id : ids) tokens.push_back(vocab_.token(id));
  return tokens;
}

}  // namespace contaccum
