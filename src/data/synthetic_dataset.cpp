#include "contaccum/data/synthetic_dataset.h"

#include "contaccum/data/beir_writer.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <vector>

namespace contaccum {
namespace {

// SplitMix64 with our own bounded and real draws: std's distributions differ
// between standard libraries, and the data must not.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0, without modulo bias.
  int64_t below(int64_t n) {
    const auto range = static_cast<uint64_t>(n);
    const uint64_t threshold = (0 - range) % range;
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return static_cast<int64_t>(r % range);
    }
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  template <typename T>
  void shuffle(std::vector<T>& x) {
    for (size_t i = x.size(); i-- > 1;) std::swap(x[i], x[static_cast<size_t>(below(static_cast<int64_t>(i + 1)))]);
  }

 private:
  uint64_t state_;
};

// Words are three consonant-vowel syllables. Indices are scrambled by a
// multiplier prime to kWords so that neighbouring indices (one topic's
// vocabulary) share no spelling a subword tokenizer could exploit.
constexpr const char* kConsonants = "bdfgklmnprstvz";
constexpr const char* kVowels = "aeiou";
constexpr int64_t kSyllables = 14 * 5;
constexpr int64_t kWords = kSyllables * kSyllables * kSyllables;

std::string spell(int64_t index) {
  int64_t code = index * 104729 % kWords;
  std::string word;
  for (int s = 0; s < 3; ++s, code /= kSyllables) {
    word.push_back(kConsonants[code % kSyllables / 5]);
    word.push_back(kVowels[code % 5]);
  }
  return word;
}

std::string join(const std::vector<int64_t>& words, const std::vector<std::string>& vocabulary) {
  std::string out;
  for (const auto w : words) {
    if (!out.empty()) out.push_back(' ');
    out += vocabulary[static_cast<size_t>(w)];
  }
  return out;
}

void check_options(const SyntheticDatasetOptions& o) {
  TORCH_CHECK(o.topics() > 0, "SyntheticDatasetOptions::topics must be > 0, got ", o.topics());
  TORCH_CHECK(o.words_per_topic() > 0, "SyntheticDatasetOptions::words_per_topic must be > 0, got ",
              o.words_per_topic());
  TORCH_CHECK(o.background_words() >= 0, "SyntheticDatasetOptions::background_words must be >= 0, got ",
              o.background_words());
  TORCH_CHECK(o.passages() > 0, "SyntheticDatasetOptions::passages must be > 0, got ", o.passages());
  TORCH_CHECK(o.train_queries() > 0, "SyntheticDatasetOptions::train_queries must be > 0, got ", o.train_queries());
  TORCH_CHECK(o.dev_queries() >= 0, "SyntheticDatasetOptions::dev_queries must be >= 0, got ", o.dev_queries());
  TORCH_CHECK(o.train_queries() + o.dev_queries() <= o.passages(),
              "SyntheticDatasetOptions: train_queries + dev_queries must be <= passages (one query per passage), got ",
              o.train_queries(), " + ", o.dev_queries(), " > ", o.passages());
  TORCH_CHECK(o.focus_words() > 0 && o.focus_words() <= o.words_per_topic(),
              "SyntheticDatasetOptions::focus_words must be in [1, words_per_topic = ", o.words_per_topic(), "], got ",
              o.focus_words());
  TORCH_CHECK(o.passage_words() >= o.focus_words(),
              "SyntheticDatasetOptions::passage_words must be >= focus_words = ", o.focus_words(), ", got ",
              o.passage_words());
  TORCH_CHECK(o.query_words() > 0 && o.query_words() <= o.focus_words(),
              "SyntheticDatasetOptions::query_words must be in [1, focus_words = ", o.focus_words(), "], got ",
              o.query_words());
  TORCH_CHECK(o.topic_fraction() >= 0.0 && o.topic_fraction() <= 1.0,
              "SyntheticDatasetOptions::topic_fraction must be in [0, 1], got ", o.topic_fraction());
  TORCH_CHECK(o.paraphrase_rate() >= 0.0 && o.paraphrase_rate() <= 1.0,
              "SyntheticDatasetOptions::paraphrase_rate must be in [0, 1], got ", o.paraphrase_rate());
  TORCH_CHECK(o.background_words() > 0 || o.topic_fraction() == 1.0 || o.passage_words() == o.focus_words(),
              "SyntheticDatasetOptions::background_words must be > 0 when topic_fraction < 1, got 0");
  // Checked factor by factor so the product cannot overflow.
  TORCH_CHECK(o.topics() <= kWords && o.words_per_topic() <= kWords &&
                  2 * o.topics() * o.words_per_topic() + o.background_words() <= kWords,
              "SyntheticDatasetOptions: 2 * topics * words_per_topic + background_words must be <= ", kWords,
              ", got topics ", o.topics(), ", words_per_topic ", o.words_per_topic(), ", background_words ",
              o.background_words());
}

// Words: topic words (topic-major), their paraphrases, then background words
// drawn with Zipf weights 1/rank, as words in real text.
struct SyntheticWords {
  explicit SyntheticWords(const SyntheticDatasetOptions& o)
      : per_topic(o.words_per_topic()), topic_words(o.topics() * per_topic), background(2 * topic_words) {
    spelled.reserve(static_cast<size_t>(background + o.background_words()));
    for (int64_t w = 0; w < background + o.background_words(); ++w) spelled.push_back(spell(w));
    cumulative.resize(static_cast<size_t>(o.background_words()));
    for (size_t r = 0; r < cumulative.size(); ++r) cumulative[r] = total += 1.0 / static_cast<double>(r + 1);
  }
  int64_t background_word(double u) const {
    const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u * total);
    return background + std::min<int64_t>(it - cumulative.begin(), static_cast<int64_t>(cumulative.size()) - 1);
  }

  int64_t per_topic, topic_words, background;
  std::vector<std::string> spelled;
  std::vector<double> cumulative;
  double total = 0.0;
};

// Partial Fisher-Yates: the first k entries of `pool` become the sample.
std::vector<int64_t> sample_distinct(Rng& rng, std::vector<int64_t>& pool, int64_t k) {
  for (int64_t i = 0; i < k; ++i) std::swap(pool[i], pool[i + rng.below(static_cast<int64_t>(pool.size()) - i)]);
  return std::vector<int64_t>(pool.begin(), pool.begin() + k);
}

// Each passage: its topic's focus words, padded with topic and background
// words, shuffled. `focus` gets each passage's focus words.
std::vector<std::string> make_passages(const SyntheticDatasetOptions& o, const SyntheticWords& v, Rng& rng,
                                       std::vector<std::vector<int64_t>>& focus) {
  std::vector<std::string> texts(static_cast<size_t>(o.passages()));
  focus.assign(texts.size(), {});
  std::vector<int64_t> topic_pool(static_cast<size_t>(v.per_topic));
  std::vector<int64_t> words;
  for (size_t n = 0; n < texts.size(); ++n) {
    const int64_t topic_base = rng.below(o.topics()) * v.per_topic;
    for (int64_t j = 0; j < v.per_topic; ++j) topic_pool[j] = topic_base + j;
    focus[n] = sample_distinct(rng, topic_pool, o.focus_words());
    words = focus[n];
    while (static_cast<int64_t>(words.size()) < o.passage_words()) {
      if (rng.uniform() < o.topic_fraction()) {
        words.push_back(topic_base + rng.below(v.per_topic));
      } else {
        words.push_back(v.background_word(rng.uniform()));
      }
    }
    rng.shuffle(words);
    texts[n] = join(words, v.spelled);
  }
  return texts;
}

}  // namespace

void build_synthetic_dataset(const std::string& out_dir, const SyntheticDatasetOptions& o) {
  check_options(o);
  const SyntheticWords vocabulary(o);
  Rng rng(o.seed());
  std::vector<std::vector<int64_t>> focus;
  const auto texts = make_passages(o, vocabulary, rng, focus);

  std::vector<int64_t> about(texts.size());
  for (size_t n = 0; n < about.size(); ++n) about[n] = static_cast<int64_t>(n);
  rng.shuffle(about);

  std::vector<std::string> ids;  // views below point into it: no reallocation
  ids.reserve(texts.size() + 2 * static_cast<size_t>(o.train_queries() + o.dev_queries()));
  auto id = [&](const char* prefix, int64_t n) -> std::string_view {
    ids.push_back(prefix + std::to_string(n));
    return ids.back();
  };
  std::vector<BeirPassage> corpus;
  corpus.reserve(texts.size());
  for (size_t n = 0; n < texts.size(); ++n) corpus.push_back({id("d:", static_cast<int64_t>(n)), texts[n]});

  std::vector<std::string> query_texts;
  query_texts.reserve(static_cast<size_t>(o.train_queries() + o.dev_queries()));
  auto queries = [&](int64_t begin, int64_t count) {
    std::vector<BeirQuery> rows;
    for (int64_t i = begin; i < begin + count; ++i) {
      const int64_t n = about[static_cast<size_t>(i)];
      std::vector<int64_t> pool = focus[static_cast<size_t>(n)];
      auto query = sample_distinct(rng, pool, o.query_words());
      for (auto& w : query) {
        if (rng.uniform() < o.paraphrase_rate()) w += vocabulary.topic_words;
      }
      query_texts.push_back(join(query, vocabulary.spelled));
      rows.push_back({id("q:", n), query_texts.back(), id("d:", n)});
    }
    return rows;
  };
  // Dev first, so a dev query does not change with train_queries.
  const auto dev = queries(0, o.dev_queries());
  const auto train = queries(o.dev_queries(), o.train_queries());
  write_beir_dataset(out_dir, corpus, train, dev, "build_synthetic_dataset");
}

}  // namespace contaccum
