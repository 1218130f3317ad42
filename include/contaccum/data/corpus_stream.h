#pragma once

#include "contaccum/data/passage_source.h"
#include "contaccum/data/reader_options.h"

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// A BEIR `corpus.jsonl` read from its file a block at a time, for corpora
/// too large to hold (a `TextTable` keeps every id, title and text: about
/// 300 bytes a passage on debpkg, 1.2 GB at 4M passages).
///
/// Rows are numbered as `read_beir_corpus` numbers them, with the same bad
/// records refused or skipped (`ReaderOptions`), so qrels, rankings and
/// embeddings agree with the in-memory table's. A repeated `_id` is found
/// without keeping the ids: opening scans the file for 64-bit hashes of the
/// ids (8 bytes a passage, up to 16 while the vector grows; freed after that
/// scan), then validates and counts, comparing the text of only the ids
/// whose hash repeats. Every later call is one more scan; nothing of the corpus is kept
/// between calls. A file that changes after opening is refused.
class CorpusStream : public PassageSource {
 public:
  /// Opens and checks `path`; throws "path:line: problem" on the first bad
  /// record, or skips and counts them in `report` (as `read_beir_corpus`).
  explicit CorpusStream(std::string path, const ReaderOptions& options = {}, ReadReport* report = nullptr);

  const std::string& path() const { return path_; }
  int64_t size() const override { return rows_; }
  void for_each_block(int64_t begin, int64_t end, int64_t block_rows, const PassageBlockFn& fn) const override;
  /// The row of each of `ids`, -1 for an id the corpus does not hold.
  std::vector<int64_t> find(const std::vector<std::string>& ids) const;
  /// The id of each of `rows` (each in `[0, size())`).
  std::vector<std::string> ids(const std::vector<int64_t>& rows) const;

 private:
  // Calls fn(row, record) for every kept record of the file.
  template <typename Fn>
  void scan(Fn&& fn) const;
  void check_unchanged() const;

  std::string path_;
  ReaderOptions options_;
  int64_t rows_ = 0;
  // Lines whose record repeats an earlier id (skipped, as the table does).
  std::vector<int64_t> repeated_lines_;
  // What the file was when opened.
  int64_t file_bytes_ = 0;
  int64_t file_mtime_ns_ = 0;
};

}  // namespace contaccum
