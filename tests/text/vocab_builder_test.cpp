#include "contaccum/text/vocab_builder.h"

#include "contaccum/text/wordpiece_tokenizer.h"

#include "test_util.h"

#include <algorithm>
#include <random>

namespace contaccum {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

const std::vector<std::string> kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

// A small corpus with a Zipf-like word distribution, some punctuation and a
// few accented and CJK characters.
std::vector<std::string> corpus() {
  const std::vector<std::string> words = {
      "the",     "of",       "and",      "retrieval", "dense",    "training", "gradient", "cache",      "memory",
      "bank",    "negative", "passages", "queries",   "encoder",  "learning", "batch",    "size",       "running",
      "jumping", "singing",  "walked",   "talked",    "unlikely", "unknown",  "café",     "naïve",      "数据",
      "检索",    "don't",    "e.g.",     "x86_64",    "libc6",    "python3",  "GPU",      "contrastive"};
  std::mt19937 rng(1234);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) {
    std::string t;
    const int n = 3 + static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) {
      // Rank r drawn with probability ~ 1 / (r + 1).
      const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      const auto r = static_cast<size_t>(std::pow(static_cast<double>(words.size()) + 1.0, u)) - 1;
      t += words[std::min(r, words.size() - 1)];
      t += (rng() % 7 == 0) ? ", " : " ";
    }
    texts.push_back(t);
  }
  return texts;
}

TEST(WordPieceTrainer, HandCheckedMerges) {
  // Words "ab" x4 and "abc" x1. Alphabet a=5 b=6 c=7, continuations ##b=8
  // ##c=9. Pairs: (a,##b) 5, (##b,##c) 1: "ab" is merged; then (ab,##c) has
  // count 1 < min_frequency 2 and training stops.
  const auto vocab = train_wordpiece_vocabulary({"ab ab ab", "AB abc"}, WordPieceTrainerOptions(100));
  EXPECT_THAT(vocab.tokens(),
              ElementsAre("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##b", "##c", "ab"));
  // With min_frequency 1 the last pair goes too.
  const auto all = train_wordpiece_vocabulary({"ab ab ab", "AB abc"}, WordPieceTrainerOptions(100).min_frequency(1));
  EXPECT_EQ(all.tokens().back(), "abc");
  EXPECT_EQ(all.size(), 12);
}

TEST(WordPieceTrainer, ContinuationMergesAndTies) {
  // "cab" x3, "dab" x3: a=5 b=6 c=7 d=8 ##a=9 ##b=10. (##a,##b) has 6 and
  // becomes "##ab" (one "##", not "##a##b"); then (c,##ab) and (d,##ab) tie
  // at 3 and the smaller pair of ids, (c,##ab), goes first.
  const auto vocab = train_wordpiece_vocabulary({"cab dab", "dab cab", "cab dab"}, WordPieceTrainerOptions(100));
  EXPECT_THAT(vocab.tokens(), ElementsAre("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "##a",
                                          "##b", "##ab", "cab", "dab"));
}

TEST(WordPieceTrainer, SpecialTokensComeFirst) {
  const auto vocab = train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(300));
  for (size_t i = 0; i < kSpecials.size(); ++i) EXPECT_EQ(vocab.token(static_cast<int64_t>(i)), kSpecials[i]);
  const auto custom = train_wordpiece_vocabulary(
      corpus(), WordPieceTrainerOptions(300).special_tokens({"<pad>", "<unk>", "<s>", "</s>"}));
  EXPECT_THAT(std::vector<std::string>(custom.tokens().begin(), custom.tokens().begin() + 4),
              ElementsAre("<pad>", "<unk>", "<s>", "</s>"));
}

TEST(WordPieceTrainer, RespectsVocabSize) {
  // Special tokens and alphabet only, and everything the corpus allows.
  const int64_t base =
      train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(1000).min_frequency(1000000)).size();
  const int64_t full = train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(100000)).size();
  ASSERT_LT(base + 50, full);
  for (const int64_t size : {base, base + 1, (base + full) / 2, full - 1, full}) {
    EXPECT_EQ(train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(size)).size(), size);
  }
  EXPECT_EQ(train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(full + 50)).size(), full);
  // Too small for the alphabet: a clear error rather than a larger vocabulary.
  EXPECT_THAT(
      [] { train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(20)); },
      ThrowsMessage<c10::Error>(HasSubstr("vocab_size (20) cannot hold the 5 special tokens and the alphabet")));
}

TEST(WordPieceTrainer, StopsWhenNoPairIsFrequentEnough) {
  // min_frequency above every pair count: no merge at all, only the
  // special tokens and the alphabet.
  const auto vocab = train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(30000).min_frequency(1000000));
  for (int64_t i = 5; i < vocab.size(); ++i) {
    const auto& t = vocab.token(i);
    const bool continuation = t.rfind("##", 0) == 0;
    const auto chars = std::count_if(t.begin() + (continuation ? 2 : 0), t.end(),
                                     [](char c) { return (static_cast<uint8_t>(c) & 0xC0) != 0x80; });
    EXPECT_EQ(chars, 1) << t;
  }
  // Without a limit, training ends when no pair is left at all.
  const auto full = train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(30000));
  EXPECT_LT(full.size(), 30000);
}

TEST(WordPieceTrainer, IsDeterministicAndOrderIndependent) {
  auto texts = corpus();
  const auto a = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(250));
  const auto b = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(250));
  std::shuffle(texts.begin(), texts.end(), std::mt19937(99));
  const auto c = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(250));
  EXPECT_EQ(a.tokens(), b.tokens());
  EXPECT_EQ(a.tokens(), c.tokens());
}

TEST(WordPieceTrainer, TrainingTextNeedsNoUnknown) {
  const auto texts = corpus();
  const auto vocab = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(200));
  const WordPieceTokenizer tok(vocab);
  for (const auto& t : texts) {
    const auto ids = tok.encode(t);
    ASSERT_EQ(std::count(ids.begin(), ids.end(), tok.unk_id()), 0) << t;
  }
  // No token has a "##" anywhere but at its start.
  for (const auto& t : vocab.tokens()) EXPECT_EQ(t.find("##", 1), std::string::npos) << t;
}

TEST(WordPieceTrainer, FrequentWordsBecomeSingleTokens) {
  const auto vocab = train_wordpiece_vocabulary(corpus(), WordPieceTrainerOptions(400));
  const WordPieceTokenizer tok(vocab);
  for (const char* word : {"the", "of", "and", "retrieval", "dense"}) {
    EXPECT_TRUE(vocab.contains(word)) << word;
    EXPECT_THAT(tok.tokenize(word), ElementsAre(word));
  }
  // Words are lower-cased and accents stripped before counting.
  EXPECT_FALSE(vocab.contains("é"));
  EXPECT_FALSE(vocab.contains("GPU"));
  EXPECT_TRUE(vocab.contains("gpu"));
  // CJK ideographs are words of their own and so plain alphabet tokens.
  EXPECT_TRUE(vocab.contains("数"));
  EXPECT_FALSE(vocab.contains("##数"));
}

TEST(WordPieceTrainer, LimitAlphabetDropsRareCharacters) {
  std::vector<std::string> texts(20, "abc abd abe");
  texts.push_back("zq");
  const auto vocab = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(100).limit_alphabet(5));
  EXPECT_TRUE(vocab.contains("a"));
  EXPECT_TRUE(vocab.contains("e"));
  EXPECT_FALSE(vocab.contains("z"));
  EXPECT_FALSE(vocab.contains("##q"));
  // Text with a dropped character becomes [UNK].
  EXPECT_THAT(WordPieceTokenizer(vocab).tokenize("abc zq"), ElementsAre("abc", "[UNK]"));
}

TEST(WordPieceTrainer, StreamingMatchesTheConvenienceFunction) {
  const auto texts = corpus();
  WordPieceTrainer trainer(WordPieceTrainerOptions(260));
  for (const auto& t : texts) trainer.add(t);
  EXPECT_GT(trainer.num_words(), 30);
  const auto first = trainer.finish();
  EXPECT_EQ(first.tokens(), train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(260)).tokens());
  // finish() leaves the counts as they were: it can be called again, also
  // after adding more text.
  EXPECT_EQ(trainer.finish().tokens(), first.tokens());
  trainer.add("zebra zebra zebra");
  EXPECT_TRUE(trainer.finish().contains("z"));
  EXPECT_THAT([&] { trainer.add("ok \xFF"); }, ThrowsMessage<c10::Error>(HasSubstr("invalid UTF-8 at byte offset 3")));
}

TEST(WordPieceTrainer, ValidatesOptions) {
  EXPECT_THAT([] { WordPieceTrainer(WordPieceTrainerOptions(0)); },
              ThrowsMessage<c10::Error>(HasSubstr("vocab_size must be > 0, got 0")));
  EXPECT_THAT([] { WordPieceTrainer(WordPieceTrainerOptions(10).min_frequency(-1)); },
              ThrowsMessage<c10::Error>(HasSubstr("min_frequency must be >= 0, got -1")));
  EXPECT_THAT([] { WordPieceTrainer(WordPieceTrainerOptions(10).limit_alphabet(0)); },
              ThrowsMessage<c10::Error>(HasSubstr("limit_alphabet must be > 0, got 0")));
  EXPECT_THAT(
      [] {
        WordPieceTrainer(WordPieceTrainerOptions(10).special_tokens({"[PAD]", "[PAD]"}));
      },
      ThrowsMessage<c10::Error>(HasSubstr("holds '[PAD]' twice")));
}

TEST(WordPieceTrainer, EmptyInputGivesSpecialTokensOnly) {
  EXPECT_THAT(train_wordpiece_vocabulary({}, WordPieceTrainerOptions(10)).tokens(), ElementsAreArray(kSpecials));
  EXPECT_THAT(train_wordpiece_vocabulary({"", "  "}, WordPieceTrainerOptions(10)).tokens(),
              ElementsAreArray(kSpecials));
}

}  // namespace
}  // namespace contaccum
