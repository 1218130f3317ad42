#pragma once

#include <torch/arg.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// Options of `BasicTokenizer`; the defaults are those of Hugging Face's
/// `BertTokenizer` for uncased models.
///
/// Example (a cased model such as `bert-base-cased`):
/// ```
/// BasicTokenizer tok(BasicTokenizerOptions().lower_case(false));
/// ```
struct BasicTokenizerOptions {
  /// Lower-case every word. Default: true.
  TORCH_ARG(bool, lower_case) = true;
  /// Remove accents (NFD, then drop the nonspacing marks, Unicode category
  /// Mn). Unset means "follow `lower_case`", as in Hugging Face, where
  /// uncased models strip accents and cased ones keep them; set it to
  /// override either way. Default: unset.
  TORCH_ARG(std::optional<bool>, strip_accents) = std::nullopt;
  /// Put spaces around CJK ideographs so each becomes a word of its own.
  /// Default: true.
  TORCH_ARG(bool, tokenize_chinese_chars) = true;
  /// Whitespace-delimited words that are passed through untouched: neither
  /// lower-cased, stripped nor split on punctuation (Hugging Face's
  /// `never_split`). Put the special tokens here to let a literal "[SEP]" in
  /// the text act as one, as `BertTokenizer` does. Default: empty.
  TORCH_ARG(std::set<std::string>, never_split) = {};

 public:
  /// Whether accents are removed once `strip_accents` and `lower_case` are
  /// taken together.
  bool strips_accents() const { return strip_accents_.value_or(lower_case_); }
};

/// BERT's pre-tokenizer, step for step what Hugging Face's `BasicTokenizer`
/// does:
///
/// 1. clean: drop NUL, U+FFFD and control/format/unassigned characters
///    (Unicode category C*, except tab, newline and carriage return); every
///    whitespace character becomes a space;
/// 2. put spaces around CJK ideographs (when `tokenize_chinese_chars`);
/// 3. NFC, then split on whitespace;
/// 4. per word: lower-case (when `lower_case`), then NFD and drop the
///    nonspacing marks (when accents are stripped);
/// 5. split every punctuation character (ASCII 33-47, 58-64, 91-96,
///    123-126 and Unicode category P*) off as a word of its own.
///
/// This is the Python `BertTokenizer` of recent `transformers` versions. Its
/// Rust twin `BertTokenizerFast` differs only on rare input: it skips the NFC
/// (which matters for decomposed accents that are kept) and lowers a final
/// capital sigma to "σ". Lower-casing here follows Python's `str.lower`:
/// simple case mapping plus the two rules it adds (U+0130 becomes "i" +
/// U+0307, a word-final capital sigma becomes "ς"). Line and paragraph
/// separators (U+2028, U+2029) separate words, as Python's `str.split` makes
/// them do. Unicode data comes from utf8proc, so characters newer than the
/// Python that runs Hugging Face may be classified differently.
///
/// Stateless: methods are const and safe to call from several threads.
class BasicTokenizer {
 public:
  /// A tokenizer with the given options (uncased BERT by default).
  explicit BasicTokenizer(BasicTokenizerOptions options = {});

  /// The words of `text`. Throws when `text` is not valid UTF-8; the message
  /// gives the byte offset of the bad sequence.
  std::vector<std::string> tokenize(std::string_view text) const;

  /// Streams the words of `text` to `emit` without allocating a string per
  /// word. A view is only valid during its call. `emit` returns false to stop
  /// early; the rest of `text` is then neither read nor checked for invalid
  /// UTF-8, which lets truncating callers skip the tail of long texts.
  void tokenize(std::string_view text, const std::function<bool(std::string_view)>& emit) const;

  /// The options it was built with.
  const BasicTokenizerOptions& options() const { return options_; }

 private:
  BasicTokenizerOptions options_;
};

}  // namespace contaccum
