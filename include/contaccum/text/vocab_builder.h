#pragma once

#include "contaccum/text/basic_tokenizer.h"
#include "contaccum/text/vocabulary.h"

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// Options of `WordPieceTrainer`; the defaults are those of Hugging Face's
/// `BertWordPieceTokenizer.train`.
///
/// Example:
/// ```
/// auto options = WordPieceTrainerOptions(30522).min_frequency(3);
/// ```
struct WordPieceTrainerOptions {
  explicit WordPieceTrainerOptions(int64_t vocab_size) : vocab_size_(vocab_size) {}

  /// Most tokens in the vocabulary, special tokens and alphabet included.
  /// Required.
  TORCH_ARG(int64_t, vocab_size);
  /// Pairs seen fewer times than this (counting every occurrence of every
  /// word) are never merged; training stops when no pair is left that
  /// frequent. Default: 2.
  TORCH_ARG(int64_t, min_frequency) = 2;
  /// Most distinct characters in the alphabet; the most frequent are kept and
  /// the rest are dropped from the training words (and so become `[UNK]`
  /// later). Default: 1000.
  TORCH_ARG(int64_t, limit_alphabet) = 1000;
  /// Tokens put first, at ids 0, 1, ... in this order. Default: BERT's
  /// "[PAD]" (0), "[UNK]" (1), "[CLS]" (2), "[SEP]" (3), "[MASK]" (4).
  TORCH_ARG(std::vector<std::string>, special_tokens) = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  /// How texts are cut into words; use the same options for the
  /// `WordPieceTokenizer` that will use the vocabulary. Default: uncased.
  TORCH_ARG(BasicTokenizerOptions, basic) = {};
};

/// Learns a WordPiece vocabulary from text, as Hugging Face `tokenizers`'
/// `WordPieceTrainer` does: words are counted after `BasicTokenizer`; the
/// alphabet is every character (and its `##` continuation form); then the
/// most frequent adjacent pair of units, weighted by word frequency, is merged
/// into a new unit ("un" + "##aff" -> "unaff", "##aff" + "##able" ->
/// "##affable") until the vocabulary is full or no pair reaches
/// `min_frequency`.
///
/// Deterministic: the vocabulary depends only on the multiset of texts, not on
/// their order. Ties between equally frequent pairs go to the pair whose
/// first unit, then second unit, has the smaller id (ids follow the order of
/// `finish`'s result, the alphabet being sorted by code point), as Hugging
/// Face breaks them. Pair counts are updated incrementally, so a merge only
/// touches the words that contain the pair: a 30k vocabulary is learnt from
/// 20 MB of text in seconds.
///
/// Example:
/// ```
/// WordPieceTrainer trainer(WordPieceTrainerOptions(30522));
/// for (const auto& passage : corpus) trainer.add(passage);
/// trainer.finish().save("vocab.txt");
/// ```
class WordPieceTrainer {
 public:
  /// An empty trainer. Throws when an option is out of range or a special
  /// token is empty or repeated.
  explicit WordPieceTrainer(WordPieceTrainerOptions options);
  ~WordPieceTrainer();
  /// Movable, not copyable (the counts can be large).
  WordPieceTrainer(WordPieceTrainer&&) noexcept;
  /// Movable, not copyable (the counts can be large).
  WordPieceTrainer& operator=(WordPieceTrainer&&) noexcept;

  /// Counts the words of `text` (streaming: only word counts are kept).
  /// Throws on invalid UTF-8.
  void add(std::string_view text);

  /// Number of distinct words counted so far.
  int64_t num_words() const;

  /// Runs the merges and returns the vocabulary: special tokens, then the
  /// alphabet (characters by code point, then their `##` forms), then the
  /// merged units in the order they were learnt. Throws when `vocab_size`
  /// cannot even hold the special tokens and the alphabet. Leaves the counts
  /// untouched, so more text can be added and `finish` called again.
  Vocabulary finish() const;

  /// The options it was built with.
  const WordPieceTrainerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Trains on every text of `texts` (see `WordPieceTrainer`).
Vocabulary train_wordpiece_vocabulary(const std::vector<std::string>& texts, WordPieceTrainerOptions options);

}  // namespace contaccum
