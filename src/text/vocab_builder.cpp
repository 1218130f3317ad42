#include "contaccum/text/vocab_builder.h"

#include <c10/util/Exception.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>
#include <unordered_map>
#include <unordered_set>

namespace contaccum {

namespace {

// Owns the bytes of the counted words in large blocks, so that the count map
// can be keyed by string_view (looked up without allocating) and a word costs
// its bytes, not a std::string each.
class StringArena {
 public:
  std::string_view store(std::string_view s) {
    if (s.empty()) return {};
    if (capacity_ - used_ < s.size()) {
      capacity_ = std::max<size_t>(size_t{1} << 20, s.size());
      blocks_.emplace_back(new char[capacity_]);
      used_ = 0;
    }
    char* dst = blocks_.back().get() + used_;
    std::memcpy(dst, s.data(), s.size());
    used_ += s.size();
    return {dst, s.size()};
  }

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
  size_t used_ = 0, capacity_ = 0;
};

void decode(std::string_view word, std::vector<int32_t>& cps) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(word.data());
  const auto n = static_cast<utf8proc_ssize_t>(word.size());
  for (utf8proc_ssize_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    const auto len = utf8proc_iterate(p + i, n - i, &cp);
    TORCH_INTERNAL_ASSERT(len > 0, "a counted word is invalid UTF-8");
    cps.push_back(cp);
    i += len;
  }
}

std::string encode(int32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto len = utf8proc_encode_char(cp, buf);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
}

using Pair = uint64_t;
Pair make_pair(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }
uint32_t first_of(Pair p) { return static_cast<uint32_t>(p >> 32); }
uint32_t second_of(Pair p) { return static_cast<uint32_t>(p); }

struct PairInfo {
  // Occurrences weighted by word frequency.
  int64_t count = 0;
  // Words that contained the pair at some point (may repeat, may be stale):
  // merging a pair only visits these.
  std::vector<uint32_t> words;
};

struct QueueEntry {
  int64_t count;
  Pair pair;
};
// Most frequent first; ties to the smaller pair (first unit, then second),
// as Hugging Face's BPE trainer.
struct QueueOrder {
  bool operator()(const QueueEntry& x, const QueueEntry& y) const {
    if (x.count != y.count) return x.count < y.count;
    return x.pair > y.pair;
  }
};

// The symbols of all words, flattened: merges only shorten words, so they
// are compacted in place.
struct Words {
  std::vector<uint32_t> symbols;
  std::vector<size_t> begin;
  std::vector<uint32_t> length;
  std::vector<int64_t> count;
};

class Vocab {
 public:
  // Id of `token`, added at the end when new.
  uint32_t add(const std::string& token) {
    const auto it = ids_.find(token);
    if (it != ids_.end()) return it->second;
    const auto id = static_cast<uint32_t>(tokens_.size());
    tokens_.push_back(token);
    ids_.emplace(token, id);
    return id;
  }
  const std::string& operator[](uint32_t id) const { return tokens_[id]; }
  size_t size() const { return tokens_.size(); }
  std::vector<std::string> release() { return std::move(tokens_); }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, uint32_t> ids_;
};

}  // namespace

struct WordPieceTrainer::Impl {
  explicit Impl(WordPieceTrainerOptions o) : options(std::move(o)), basic(options.basic()) {}

  WordPieceTrainerOptions options;
  BasicTokenizer basic;
  StringArena arena;
  std::unordered_map<std::string_view, int64_t> counts;
};

WordPieceTrainer::WordPieceTrainer(WordPieceTrainerOptions options) {
  TORCH_CHECK(options.vocab_size() > 0, "WordPieceTrainerOptions::vocab_size must be > 0, got ", options.vocab_size());
  TORCH_CHECK(options.min_frequency() >= 0, "WordPieceTrainerOptions::min_frequency must be >= 0, got ",
              options.min_frequency());
  TORCH_CHECK(options.limit_alphabet() > 0, "WordPieceTrainerOptions::limit_alphabet must be > 0, got ",
              options.limit_alphabet());
  std::unordered_set<std::string> seen;
  for (const auto& t : options.special_tokens()) {
    TORCH_CHECK(!t.empty(), "WordPieceTrainerOptions::special_tokens must not hold an empty token");
    TORCH_CHECK(seen.insert(t).second, "WordPieceTrainerOptions::special_tokens holds '", t, "' twice");
  }
  impl_ = std::make_unique<Impl>(std::move(options));
}

WordPieceTrainer::~WordPieceTrainer() = default;
WordPieceTrainer::WordPieceTrainer(WordPieceTrainer&&) noexcept = default;
WordPieceTrainer& WordPieceTrainer::operator=(WordPieceTrainer&&) noexcept = default;

const WordPieceTrainerOptions& WordPieceTrainer::options() const { return impl_->options; }

int64_t WordPieceTrainer::num_words() const { return static_cast<int64_t>(impl_->counts.size()); }

void WordPieceTrainer::add(std::string_view text) {
  auto& counts = impl_->counts;
  auto& arena = impl_->arena;
  impl_->basic.tokenize(text, [&](std::string_view word) {
    const auto it = counts.find(word);
    if (it != counts.end()) {
      ++it->second;
    } else {
      counts.emplace(arena.store(word), 1);
    }
    return true;
  });
}

namespace {

using Entry = std::pair<std::string_view, int64_t>;
using CharIds = std::unordered_map<int32_t, uint32_t>;

// Every word's code points, one array; word w is [begin[w], begin[w + 1]).
struct WordChars {
  std::vector<int32_t> chars;
  std::vector<size_t> begin;
  std::unordered_map<int32_t, int64_t> counts;  // occurrences of each code point
};

WordChars split_into_chars(const std::vector<Entry>& entries) {
  WordChars out;
  for (const auto& e : entries) {
    out.begin.push_back(out.chars.size());
    decode(e.first, out.chars);
    for (size_t i = out.begin.back(); i < out.chars.size(); ++i) out.counts[out.chars[i]] += e.second;
  }
  out.begin.push_back(out.chars.size());
  return out;
}

// The alphabet: the most frequent characters (ties to the lower code point),
// in code point order.
std::vector<std::pair<int32_t, int64_t>> alphabet_of(const WordChars& w, size_t limit) {
  std::vector<std::pair<int32_t, int64_t>> alphabet(w.counts.begin(), w.counts.end());
  if (alphabet.size() > limit) {
    std::nth_element(
        alphabet.begin(), alphabet.begin() + static_cast<std::ptrdiff_t>(limit), alphabet.end(),
        [](const auto& x, const auto& y) { return x.second != y.second ? x.second > y.second : x.first < y.first; });
    alphabet.resize(limit);
  }
  std::sort(alphabet.begin(), alphabet.end());
  return alphabet;
}

// Adds the alphabet to `vocab`: every character, and "##c" for those seen
// past the start of a word. Position counts in the word as written, before
// dropped characters are removed, as in Hugging Face.
void add_alphabet(const std::vector<std::pair<int32_t, int64_t>>& alphabet, const WordChars& w, Vocab& vocab,
                  CharIds& start_id, CharIds& continuation_id) {
  for (const auto& c : alphabet) start_id.emplace(c.first, vocab.add(encode(c.first)));
  std::vector<bool> continues(alphabet.size(), false);
  for (size_t word = 0; word + 1 < w.begin.size(); ++word) {
    for (size_t i = w.begin[word] + 1; i < w.begin[word + 1]; ++i) {
      const auto it = std::lower_bound(alphabet.begin(), alphabet.end(), std::make_pair(w.chars[i], int64_t{0}),
                                       [](const auto& x, const auto& y) { return x.first < y.first; });
      if (it != alphabet.end() && it->first == w.chars[i]) continues[static_cast<size_t>(it - alphabet.begin())] = true;
    }
  }
  for (size_t k = 0; k < alphabet.size(); ++k) {
    if (continues[k]) continuation_id.emplace(alphabet[k].first, vocab.add("##" + encode(alphabet[k].first)));
  }
}

// Words as unit ids; those left with fewer than two units have no pair and
// are not kept.
Words words_as_units(const std::vector<Entry>& entries, const WordChars& w, const CharIds& start_id,
                     const CharIds& continuation_id) {
  Words words;
  for (size_t word = 0; word < entries.size(); ++word) {
    const size_t begin = words.symbols.size();
    for (size_t i = w.begin[word]; i < w.begin[word + 1]; ++i) {
      const auto& ids = i == w.begin[word] ? start_id : continuation_id;
      const auto it = ids.find(w.chars[i]);
      if (it != ids.end()) words.symbols.push_back(it->second);
    }
    const size_t length = words.symbols.size() - begin;
    if (length < 2) {
      words.symbols.resize(begin);
      continue;
    }
    words.begin.push_back(begin);
    words.length.push_back(static_cast<uint32_t>(length));
    words.count.push_back(entries[word].second);
  }
  return words;
}

std::unordered_map<Pair, PairInfo> count_pairs(const Words& words) {
  std::unordered_map<Pair, PairInfo> pairs;
  for (size_t w = 0; w < words.begin.size(); ++w) {
    const uint32_t* s = words.symbols.data() + words.begin[w];
    for (uint32_t i = 0; i + 1 < words.length[w]; ++i) {
      auto& info = pairs[make_pair(s[i], s[i + 1])];
      info.count += words.count[w];
      if (info.words.empty() || info.words.back() != w) info.words.push_back(static_cast<uint32_t>(w));
    }
  }
  return pairs;
}

// The merge loop: the most frequent pair becomes a unit, until the
// vocabulary is full or no pair occurs `min_count` times.
class PairMerger {
 public:
  PairMerger(Words& words, std::unordered_map<Pair, PairInfo>& pairs, Vocab& vocab)
      : words_(words), pairs_(pairs), vocab_(vocab), visited_(words.begin.size(), kNever) {
    for (const auto& kv : pairs_) queue_.push({kv.second.count, kv.first});
  }

  void run(size_t vocab_size, int64_t min_count) {
    while (vocab_.size() < vocab_size && !queue_.empty()) {
      const QueueEntry top = queue_.top();
      queue_.pop();
      const auto found = pairs_.find(top.pair);
      const int64_t count = found == pairs_.end() ? 0 : found->second.count;
      if (count != top.count) {
        // Stale entry; pairs that grew were pushed afresh when they grew.
        if (count > 0) queue_.push({count, top.pair});
        continue;
      }
      if (count < min_count) break;
      merge(top.pair, found->second);
    }
  }

 private:
  static constexpr uint32_t kNever = std::numeric_limits<uint32_t>::max();

  void merge(Pair pair, PairInfo& target) {
    const uint32_t a = first_of(pair), b = second_of(pair);
    const std::string& right = vocab_[b];
    const bool continued = right.size() > 2 && right.compare(0, 2, "##") == 0;
    const uint32_t merged = vocab_.add(vocab_[a] + (continued ? right.substr(2) : right));
    // References into an unordered_map survive rehashing.
    const std::vector<uint32_t> targets = std::move(target.words);
    grown_.clear();
    for (const uint32_t w : targets) {
      if (visited_[w] == merge_) continue;
      visited_[w] = merge_;
      rewrite(w, a, b, merged, target);
    }
    TORCH_INTERNAL_ASSERT(pairs_.at(pair).count == 0, "WordPieceTrainer: pair count out of sync after a merge");
    pairs_.erase(pair);
    std::sort(grown_.begin(), grown_.end());
    grown_.erase(std::unique(grown_.begin(), grown_.end()), grown_.end());
    for (const Pair p : grown_) {
      const auto it = pairs_.find(p);
      if (it != pairs_.end() && it->second.count > 0) queue_.push({it->second.count, p});
    }
    ++merge_;
  }

  // Replaces every (a, b) in word w by `merged`, left to right and
  // non-overlapping, as Hugging Face: `out` trails `in`, so s[out - 1] is the
  // already merged left neighbour and s[in + 2] the untouched right one.
  void rewrite(uint32_t w, uint32_t a, uint32_t b, uint32_t merged, PairInfo& target) {
    uint32_t* s = words_.symbols.data() + words_.begin[w];
    const uint32_t n = words_.length[w];
    const int64_t c = words_.count[w];
    uint32_t in = 0, out = 0;
    while (in < n) {
      if (in + 1 < n && s[in] == a && s[in + 1] == b) {
        target.count -= c;
        if (out > 0) {
          update(make_pair(s[out - 1], a), -c, w);
          update(make_pair(s[out - 1], merged), c, w);
        }
        if (in + 2 < n) {
          update(make_pair(b, s[in + 2]), -c, w);
          update(make_pair(merged, s[in + 2]), c, w);
        }
        s[out++] = merged;
        in += 2;
      } else {
        s[out++] = s[in++];
      }
    }
    words_.length[w] = out;
  }

  void update(Pair p, int64_t delta, uint32_t w) {
    auto& info = pairs_[p];
    info.count += delta;
    if (delta > 0) {
      if (info.words.empty() || info.words.back() != w) info.words.push_back(w);
      grown_.push_back(p);
    }
  }

  Words& words_;
  std::unordered_map<Pair, PairInfo>& pairs_;
  Vocab& vocab_;
  std::priority_queue<QueueEntry, std::vector<QueueEntry>, QueueOrder> queue_;
  std::vector<uint32_t> visited_;  // the merge that last rewrote each word
  std::vector<Pair> grown_;
  uint32_t merge_ = 0;
};

}  // namespace

Vocabulary WordPieceTrainer::finish() const {
  const auto& options = impl_->options;
  // Sorted words make every id below independent of hash-map order.
  std::vector<Entry> entries(impl_->counts.begin(), impl_->counts.end());
  std::sort(entries.begin(), entries.end());
  const auto chars = split_into_chars(entries);

  Vocab vocab;
  for (const auto& t : options.special_tokens()) vocab.add(t);
  CharIds start_id, continuation_id;
  add_alphabet(alphabet_of(chars, static_cast<size_t>(options.limit_alphabet())), chars, vocab, start_id,
               continuation_id);
  TORCH_CHECK(vocab.size() <= static_cast<size_t>(options.vocab_size()), "WordPieceTrainer: vocab_size (",
              options.vocab_size(), ") cannot hold the ", options.special_tokens().size(),
              " special tokens and the alphabet (", vocab.size() - options.special_tokens().size(),
              " characters and ## continuations); raise vocab_size or lower limit_alphabet");

  Words words = words_as_units(entries, chars, start_id, continuation_id);
  auto pairs = count_pairs(words);
  PairMerger(words, pairs, vocab)
      .run(static_cast<size_t>(options.vocab_size()), std::max<int64_t>(1, options.min_frequency()));
  return Vocabulary(vocab.release());
}

Vocabulary train_wordpiece_vocabulary(const std::vector<std::string>& texts, WordPieceTrainerOptions options) {
  WordPieceTrainer trainer(std::move(options));
  for (const auto& text : texts) trainer.add(text);
  return trainer.finish();
}

}  // namespace contaccum
