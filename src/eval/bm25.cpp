#include "contaccum/eval/bm25.h"

#include "contaccum/core/progress.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace contaccum {
namespace {

const char* const kStopWords[] = {"a",  "an", "and", "are", "as", "at",   "be",  "by",   "for", "from", "in",
                                  "is", "it", "of",  "on",  "or", "that", "the", "this", "to",  "with"};

bool is_stop_word(std::string_view w) {
  for (const char* s : kStopWords) {
    if (w == s) return true;
  }
  return false;
}

// Calls `fn(word)` for each lowercased run of ASCII letters and digits, as
// Python's `re.findall("[a-z0-9]+", text.lower())` finds them. `buf` is
// scratch space, so that indexing a corpus allocates nothing per word.
template <typename Fn>
void for_each_word(std::string_view text, std::string& buf, Fn&& fn) {
  buf.clear();
  const auto flush = [&] {
    if (!buf.empty()) {
      fn(std::string_view(buf));
      buf.clear();
    }
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (static_cast<unsigned>(c - 'a') < 26u || static_cast<unsigned>(c - '0') < 10u) {
      buf.push_back(static_cast<char>(c));
    } else if (static_cast<unsigned>(c - 'A') < 26u) {
      buf.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (c == 0xC4 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) == 0xB0) {
      // U+0130 lowercases to "i" + U+0307 (combining, which ends the run).
      buf.push_back('i');
      flush();
      i += 1;
    } else if (c == 0xE2 && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0x84 &&
               static_cast<unsigned char>(text[i + 2]) == 0xAA) {
      // U+212A KELVIN SIGN lowercases to "k".
      buf.push_back('k');
      i += 2;
    } else {
      flush();
    }
  }
  flush();
}

// FNV-1a: words are short, so a byte loop is as fast as anything.
uint64_t hash_word(std::string_view w) {
  uint64_t h = 1469598103934665603ull;
  for (const char c : w) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Best first: higher score, then lower row.
struct Hit {
  double score;
  int32_t row;
  bool operator<(const Hit& o) const { return score > o.score || (score == o.score && row < o.row); }
};

}  // namespace

std::vector<std::string> BM25Index::tokenize(std::string_view text) {
  std::vector<std::string> words;
  std::string buf;
  for_each_word(text, buf, [&](std::string_view w) {
    if (!is_stop_word(w)) words.emplace_back(w);
  });
  return words;
}

int32_t BM25Index::find_term(std::string_view word, uint64_t hash) const {
  if (slots_.empty()) return -1;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const int32_t id = slots_[i];
    if (id < 0) return -1;
    if (hashes_[id] == hash && terms_[id] == word) return id;
  }
}

int32_t BM25Index::intern(std::string_view word) {
  const uint64_t hash = hash_word(word);
  const int32_t found = find_term(word, hash);
  if (found >= 0) return found;
  TORCH_CHECK(terms_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2),
              "BM25Index: too many distinct terms");
  const auto id = static_cast<int32_t>(terms_.size());
  terms_.push_back(arena_.add(word));
  hashes_.push_back(hash);
  // Keep the load at most 1/2 so probes stay short.
  if (terms_.size() * 2 > slots_.size()) {
    slots_.assign(std::max<size_t>(64, slots_.size() * 2), -1);
    for (int32_t t = 0; t <= id; ++t) {
      size_t i = hashes_[t] & (slots_.size() - 1);
      while (slots_[i] >= 0) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = t;
    }
  } else {
    size_t i = hash & (slots_.size() - 1);
    while (slots_[i] >= 0) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = id;
  }
  return id;
}

BM25Index::BM25Index(const TextTable& corpus, BM25Options options) : options_(options) {
  TORCH_CHECK(std::isfinite(options_.k1()) && options_.k1() >= 0, "BM25Options::k1 must be >= 0, got ", options_.k1());
  TORCH_CHECK(options_.b() >= 0 && options_.b() <= 1, "BM25Options::b must be in [0, 1], got ", options_.b());
  const int64_t n = corpus.size();
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "BM25Index: corpus has ", n, " rows, more than the ",
              std::numeric_limits<int32_t>::max(), " an index holds");

  for (const char* s : kStopWords) intern(s);
  stop_words_ = static_cast<int64_t>(terms_.size());

  // First pass, passage-major: each passage's (term, tf) pairs and each
  // term's document frequency.
  std::vector<int32_t> pair_terms, pair_tfs, count, touched;
  std::vector<int64_t> pair_offsets(static_cast<size_t>(n) + 1, 0), df;
  lengths_.resize(static_cast<size_t>(n));
  std::string buf;
  int64_t total_length = 0;
  ProgressReporter bar("bm25 index", n, "passages", !options_.progress());
  for (int64_t row = 0; row < n; ++row) {
    int32_t length = 0;
    const auto add = [&](std::string_view w) {
      const int32_t id = intern(w);
      if (id < stop_words_) return;
      if (static_cast<size_t>(id) >= count.size()) {
        count.resize(static_cast<size_t>(id) + 1, 0);
        df.resize(static_cast<size_t>(id) + 1, 0);
      }
      ++length;
      if (count[id]++ == 0) touched.push_back(id);
    };
    // full_text joins title and text with a space, so their words are the
    // title's words followed by the text's.
    for_each_word(corpus.title(row), buf, add);
    for_each_word(corpus.text(row), buf, add);
    for (const auto id : touched) {
      pair_terms.push_back(id);
      pair_tfs.push_back(count[id]);
      ++df[id];
      count[id] = 0;
    }
    touched.clear();
    pair_offsets[row + 1] = static_cast<int64_t>(pair_terms.size());
    lengths_[row] = length;
    total_length += length;
    if ((row + 1) % 4096 == 0) bar.advance(4096);
  }
  bar.advance(n % 4096);
  bar.finish();
  average_length_ = n > 0 ? static_cast<double>(total_length) / static_cast<double>(n) : 0.0;

  // Second pass, term-major: passages come in ascending order, and each
  // posting stores its term score, computed with the exact operations (and
  // order) of build.py so that ties and rankings match it bit for bit.
  const size_t vocab = terms_.size();
  df.resize(vocab, 0);
  offsets_.assign(vocab + 1, 0);
  for (size_t t = 0; t < vocab; ++t) offsets_[t + 1] = offsets_[t] + df[t];
  std::vector<double> idf(vocab);
  for (size_t t = 0; t < vocab; ++t) {
    idf[t] = std::log(1 + (static_cast<double>(n - df[t]) + 0.5) / (static_cast<double>(df[t]) + 0.5));
  }
  docs_.resize(pair_terms.size());
  impacts_.resize(pair_terms.size());
  std::vector<int64_t> fill(offsets_.begin(), offsets_.end() - 1);
  const double k1 = options_.k1(), b = options_.b();
  for (int64_t row = 0; row < n; ++row) {
    const double dl = lengths_[row];
    for (int64_t p = pair_offsets[row]; p < pair_offsets[row + 1]; ++p) {
      const int32_t t = pair_terms[p];
      const double tf = pair_tfs[p];
      const int64_t at = fill[t]++;
      docs_[at] = static_cast<int32_t>(row);
      impacts_[at] = idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / average_length_));
    }
  }
}

std::vector<int32_t> BM25Index::query_terms(std::string_view query) const {
  std::vector<int32_t> ids;
  std::string buf;
  for_each_word(query, buf, [&](std::string_view w) {
    const int32_t id = find_term(w, hash_word(w));
    if (id >= stop_words_) ids.push_back(id);
  });
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return terms_[a] < terms_[b]; });
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

torch::Tensor BM25Index::score_all(std::string_view query) const {
  auto scores = torch::zeros({size()}, torch::kDouble);
  double* acc = scores.data_ptr<double>();
  for (const auto t : query_terms(query)) {
    for (int64_t p = offsets_[t]; p < offsets_[t + 1]; ++p) acc[docs_[p]] += impacts_[p];
  }
  return scores;
}

SearchResult BM25Index::search(const std::vector<std::string>& queries, int64_t k) const {
  TORCH_CHECK(k > 0, "BM25Index::search: k must be > 0, got ", k);
  const auto num_queries = static_cast<int64_t>(queries.size());
  const int64_t n = size();
  const int64_t width = std::min(k, n);
  SearchResult result;
  result.scores = torch::empty({num_queries, width}, torch::kDouble);
  result.indices = torch::empty({num_queries, width}, torch::kLong);
  if (num_queries == 0 || width == 0) return result;
  double* out_scores = result.scores.data_ptr<double>();
  int64_t* out_rows = result.indices.data_ptr<int64_t>();

  // Rows in blocks of 64: accumulation marks a row's block without a branch,
  // and only marked blocks are scanned and cleared afterwards.
  constexpr int kBlockShift = 6;
  const int64_t blocks = (n >> kBlockShift) + 1;
  at::parallel_for(0, num_queries, /*grain_size=*/8, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(n), 0.0);
    std::vector<char> marked(static_cast<size_t>(blocks), 0);
    std::vector<Hit> top;  // a heap whose front is the worst hit kept
    top.reserve(static_cast<size_t>(width));
    for (int64_t q = begin; q < end; ++q) {
      for (const auto t : query_terms(queries[q])) {
        for (int64_t p = offsets_[t]; p < offsets_[t + 1]; ++p) {
          acc[docs_[p]] += impacts_[p];
          marked[docs_[p] >> kBlockShift] = 1;
        }
      }
      // Every posting scores > 0, so the rows above 0 are the matches. One
      // comparison per row against a threshold (0, then the worst hit kept
      // once `width` are kept) keeps the scan nearly branch-free. Rows come in
      // ascending order, so a later row tied with the worst kept hit ranks
      // below it and never replaces it.
      top.clear();
      double threshold = 0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        if (!marked[blk]) continue;
        const int64_t hi = std::min(n, (blk + 1) << kBlockShift);
        for (int64_t d = blk << kBlockShift; d < hi; ++d) {
          const double s = acc[d];
          if (s <= threshold) continue;
          const Hit hit{s, static_cast<int32_t>(d)};
          if (static_cast<int64_t>(top.size()) == width) {
            std::pop_heap(top.begin(), top.end());
            top.back() = hit;
          } else {
            top.push_back(hit);
          }
          std::push_heap(top.begin(), top.end());
          if (static_cast<int64_t>(top.size()) == width) threshold = top.front().score;
        }
      }
      std::sort_heap(top.begin(), top.end());
      // Too few matches: rows scoring 0 follow, lowest first.
      for (int32_t d = 0; static_cast<int64_t>(top.size()) < width; ++d) {
        if (acc[d] == 0) top.push_back({0.0, d});
      }
      for (int64_t j = 0; j < width; ++j) {
        out_scores[q * width + j] = top[j].score;
        out_rows[q * width + j] = top[j].row;
      }
      for (int64_t blk = 0; blk < blocks; ++blk) {
        if (!marked[blk]) continue;
        const int64_t lo = blk << kBlockShift, hi = std::min(n, (blk + 1) << kBlockShift);
        std::fill(acc.begin() + lo, acc.begin() + hi, 0.0);
        marked[blk] = 0;
      }
    }
  });
  return result;
}

}  // namespace contaccum
