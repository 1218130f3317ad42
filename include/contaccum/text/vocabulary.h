#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// A token <-> id map: the id of a token is its position, as in a BERT
/// `vocab.txt` (one token per line, id = line number starting at 0, UTF-8).
///
/// Immutable once built, so copies share one table (copying is cheap) and
/// every method is safe to call from several threads at once.
///
/// Example:
/// ```
/// auto vocab = Vocabulary::load("bert-base-uncased/vocab.txt");
/// int64_t cls = vocab.id("[CLS]").value();
/// ```
class Vocabulary {
 public:
  /// An empty vocabulary.
  Vocabulary();
  /// Token `i` of `tokens` gets id `i`. Every token must be non-empty, valid
  /// UTF-8, free of line breaks (so that `save` can write it) and unique;
  /// throws naming the first offending token otherwise.
  explicit Vocabulary(std::vector<std::string> tokens);

  /// Reads a `vocab.txt`. A trailing `\r` on a line is dropped so that files
  /// written on Windows load the same. Throws naming `path:line` on an empty
  /// line, invalid UTF-8 or a duplicate token, and naming `path` when the
  /// file cannot be read.
  static Vocabulary load(const std::string& path);

  /// Writes one token per line. Atomic (`AtomicFile`): readers never see a
  /// half-written file and a failure leaves `path` untouched.
  void save(const std::string& path) const;

  /// Number of tokens.
  int64_t size() const;
  /// True when there is no token.
  bool empty() const { return size() == 0; }
  /// The id of `token`, or nothing when it is absent.
  std::optional<int64_t> id(std::string_view token) const;
  /// True when `token` has an id.
  bool contains(std::string_view token) const { return id(token).has_value(); }
  /// The token with id `id`; throws when `id` is outside `[0, size())`.
  const std::string& token(int64_t id) const;
  /// Every token, in id order.
  const std::vector<std::string>& tokens() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace contaccum
