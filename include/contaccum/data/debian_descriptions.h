#pragma once

#include "contaccum/data/reader_options.h"

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// One package's English description from a Debian index.
struct DebianDescription {
  std::string package;
  /// The one-line synopsis (first line of the Description field), trimmed.
  std::string synopsis;
  /// The extended description: the lines of a paragraph joined by single
  /// spaces, paragraphs (" ." lines) separated by '\n', runs of spaces and
  /// tabs collapsed, trimmed. Empty when the package has none.
  std::string long_description;
};

/// Reads Debian's `Translation-en` (stanzas of `Package`, `Description-md5`,
/// `Description-en`), or a `Packages` file whose `Description` fields carry
/// the long text, streaming it line by line. The text is normalised exactly as
/// the Python reference (`build.py`'s `parse()`) does, whitespace meaning what
/// Python's `str.isspace()` means.
///
/// The file is deb822: stanzas separated by empty lines, `Field: value` lines,
/// continuation lines starting with a space or tab that belong to the field
/// above them. Continuation lines of fields other than the description (such
/// as `Conffiles` in dpkg's status file) are ignored. A bad stanza (invalid
/// UTF-8, a line over `max_line_bytes`, a continuation line before any field,
/// a line that is neither, a missing or repeated `Package` or description
/// field, a package name with whitespace) is reported as "file:line: problem",
/// or skipped whole and counted with `OnBadRecord::Skip`. `report` counts
/// lines, descriptions returned (`records`) and skipped stanzas.
std::vector<DebianDescription> read_debian_descriptions(const std::string& path, const ReaderOptions& options = {},
                                                        ReadReport* report = nullptr);

/// Options of `build_debian_dataset`.
struct DebianDatasetOptions {
  /// Seed of the split. Default: 13 (as `build.py`).
  TORCH_ARG(uint64_t, seed) = 13;
  /// Queries for `qrels/dev.tsv`. Default: 2000.
  TORCH_ARG(int64_t, dev_queries) = 2000;
  /// Queries held out for a later evaluation: their passages stay in the
  /// corpus, the queries are not written. Default: 5000.
  TORCH_ARG(int64_t, reserved_queries) = 5000;
  /// At most this many training queries; -1: every remaining one.
  /// Default: -1.
  TORCH_ARG(int64_t, max_train_queries) = -1;
  /// Fewer whitespace-separated words in the passage (after removing the
  /// restated synopsis) drop the package; >= 1. Default: 15.
  TORCH_ARG(int64_t, min_passage_words) = 15;
  /// Fewer words in the synopsis drop the package; >= 1. Default: 3.
  TORCH_ARG(int64_t, min_query_words) = 3;
};

/// What `build_debian_dataset` did with its packages.
struct DebianDatasetSummary {
  /// Descriptions given.
  int64_t packages = 0;
  /// Dropped because their package name, synopsis, long description or
  /// passage occurs more than once (all copies are dropped).
  int64_t dropped_duplicate = 0;
  /// Dropped for too few passage or query words.
  int64_t dropped_too_short = 0;
  /// Kept: the passages of `corpus.jsonl`.
  int64_t kept = 0;
  /// Queries held out (not written).
  int64_t reserved = 0;
  int64_t dev = 0;
  int64_t train = 0;
};

/// Turns package descriptions into a BEIR retrieval set in `out_dir`: the
/// query is a package's synopsis, its one relevant passage the long
/// description with a first sentence that merely restates the synopsis
/// removed. The selection is `build.py`'s, whose rule that a synopsis or long
/// description shared by several packages drops them all is extended to
/// package names (`build.py` writes both `openjdk-17-jre` entries under one
/// id) and to passages (after their restatement is removed, the three davix
/// packages' are equal), so ids are unique and each query has one answer.
/// Debian 12 "bookworm" main gives 55,086 passages, 48,086 training and 2,000
/// dev queries (`build.py`: 55,091, 48,091, 2,000).
///
/// Kept packages are sorted by name and shuffled by a Fisher-Yates shuffle
/// drawing from MT19937 exactly as CPython's `random.Random(seed).shuffle`
/// does, so a seed gives the same order on every platform and as Python;
/// the first `reserved_queries` are held out, the next `dev_queries` are dev,
/// the rest (at most `max_train_queries`) train.
///
/// Writes `corpus.jsonl` (`{"_id":"d:<package>","title":"","text":...}`,
/// sorted by package), `queries.jsonl` (`{"_id":"q:<package>","text":...}`,
/// train then dev, in split order), and `qrels/train.tsv`, `qrels/dev.tsv`.
/// Everything is written to a temporary sibling directory that then replaces
/// `out_dir`, so `out_dir` is either the old data set or the complete new
/// one; on error the temporary directory is removed and the error names
/// `out_dir`. Texts must be valid UTF-8.
DebianDatasetSummary build_debian_dataset(const std::vector<DebianDescription>& descriptions,
                                          const std::string& out_dir, const DebianDatasetOptions& options = {});

}  // namespace contaccum
