#pragma once

#include "contaccum/core/encoder_input.h"
#include "contaccum/text/basic_tokenizer.h"
#include "contaccum/text/vocabulary.h"

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// Options of `WordPieceTokenizer`; the defaults are those of Hugging Face's
/// `BertTokenizer` for `bert-base-uncased`.
///
/// Example (a cased model, queries cut at 32 tokens):
/// ```
/// auto options = WordPieceTokenizerOptions().max_length(32);
/// options.basic().lower_case(false);
/// WordPieceTokenizer tok("bert-base-cased/vocab.txt", options);
/// ```
struct WordPieceTokenizerOptions {
  /// How text is cut into words before WordPiece. Default: lower-case, strip
  /// accents, split CJK ideographs.
  TORCH_ARG(BasicTokenizerOptions, basic) = {};
  /// Words with more characters (code points) than this become `unk_token`
  /// without being looked at. Default: 100.
  TORCH_ARG(int64_t, max_input_chars_per_word) = 100;
  /// Starts every encoded text when `add_special_tokens`. Default: "[CLS]".
  TORCH_ARG(std::string, cls_token) = "[CLS]";
  /// Ends every encoded text when `add_special_tokens`. Default: "[SEP]".
  TORCH_ARG(std::string, sep_token) = "[SEP]";
  /// Fills the rows of a batch up to its longest row. Default: "[PAD]".
  TORCH_ARG(std::string, pad_token) = "[PAD]";
  /// Stands for a word that the vocabulary cannot spell. Default: "[UNK]".
  TORCH_ARG(std::string, unk_token) = "[UNK]";
  /// Most ids `encode` returns, special tokens included; longer texts are
  /// truncated at the end (`[SEP]` is kept). Default: 512 (BERT's limit).
  TORCH_ARG(int64_t, max_length) = 512;
  /// Wrap encoded texts in `[CLS] ... [SEP]`. Default: true.
  TORCH_ARG(bool, add_special_tokens) = true;
};

/// BERT's tokenizer: `BasicTokenizer`, then greedy longest-match-first
/// WordPiece on every word (continuation pieces carry a `##` prefix), as in
/// Hugging Face's `BertTokenizer`. A word the vocabulary cannot spell becomes
/// one `[UNK]` as a whole, as in Hugging Face.
///
/// The `[CLS]`, `[SEP]` etc. of `options` are only added by `encode`; a
/// literal "[SEP]" inside the text is tokenized like any other text unless it
/// is listed in `options.basic().never_split()`.
///
/// Immutable after construction: every method is const and safe to call from
/// several threads at once (copies share the vocabulary).
///
/// Example:
/// ```
/// WordPieceTokenizer tok("vocab.txt");
/// EncoderInput batch = tok.encode_batch({"what is contrastive learning?", "gradient caching"});
/// ```
class WordPieceTokenizer {
 public:
  /// Throws, naming the token, when one of the special tokens of `options` is
  /// not in `vocab`, and when an option is out of range.
  explicit WordPieceTokenizer(Vocabulary vocab, WordPieceTokenizerOptions options = {});
  /// Loads the vocabulary from a `vocab.txt` (see `Vocabulary::load`).
  explicit WordPieceTokenizer(const std::string& vocab_path, WordPieceTokenizerOptions options = {});

  /// The word pieces of `text` as strings, e.g. "unaffable" -> "un", "##aff",
  /// "##able". No special tokens are added and nothing is truncated.
  std::vector<std::string> tokenize(std::string_view text) const;

  /// The ids of `text`: `[CLS] pieces [SEP]` (just the pieces without
  /// `add_special_tokens`), truncated so that at most `max_length` ids remain
  /// (`options().max_length()` when unset); `[SEP]` is always kept. Throws on
  /// invalid UTF-8 in the part of `text` that is read: tokenization stops as
  /// soon as `max_length` is reached.
  std::vector<int64_t> encode(std::string_view text, std::optional<int64_t> max_length = std::nullopt) const;

  /// Encodes every text (as `encode`, possibly on several threads) into one
  /// batch: `input_ids` `[batch, seq]` int64, padded with the `[PAD]` id up to
  /// the longest row of this batch (not up to `max_length`), `attention_mask`
  /// 1 for real ids and 0 for padding, and `extras["token_type_ids"]` all
  /// zeros (one segment), all on the CPU. An empty `texts` gives `[0, 0]`
  /// tensors.
  EncoderInput encode_batch(const std::vector<std::string>& texts,
                            std::optional<int64_t> max_length = std::nullopt) const;

  /// Pieces as `tokenize` would give them, from ids (e.g. to inspect an
  /// encoding). Throws on an id outside the vocabulary.
  std::vector<std::string> ids_to_tokens(const std::vector<int64_t>& ids) const;

  /// The vocabulary (shared with copies of this tokenizer).
  const Vocabulary& vocab() const { return vocab_; }
  /// The options it was built with.
  const WordPieceTokenizerOptions& options() const { return options_; }
  /// Id of `options().cls_token()`.
  int64_t cls_id() const { return cls_id_; }
  /// Id of `options().sep_token()`.
  int64_t sep_id() const { return sep_id_; }
  /// Id of `options().pad_token()`: what `encode_batch` pads with, and so the
  /// `padding_idx` an embedding should get.
  int64_t pad_id() const { return pad_id_; }
  /// Id of `options().unk_token()`.
  int64_t unk_id() const { return unk_id_; }

 private:
  // Appends the pieces of every word of `text` to `ids`, stopping once
  // `budget` ids were appended (the last word may be cut).
  void append_pieces(std::string_view text, size_t budget, std::vector<int64_t>& ids) const;
  // Appends the pieces of one basic-tokenized word.
  void word_pieces(std::string_view word, std::vector<int64_t>& out, std::vector<uint32_t>& offsets) const;

  Vocabulary vocab_;
  WordPieceTokenizerOptions options_;
  BasicTokenizer basic_;
  int64_t cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, unk_id_ = -1;
  // Lookup tables of the word pieces, built once and shared by copies.
  struct Pieces;
  std::shared_ptr<const Pieces> pieces_;
};

}  // namespace contaccum
