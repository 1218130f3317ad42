#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace contaccum {

/// A passage of a BEIR data set being written.
struct BeirPassage {
  std::string_view id, text;
};
/// A query of a BEIR data set being written, and the id of its one relevant
/// passage.
struct BeirQuery {
  std::string_view id, text, positive;
};

/// Writes a BEIR data set into `out_dir`: `corpus.jsonl`
/// (`{"_id", "title": "", "text"}` in the order given), `queries.jsonl`
/// (train then dev), and `qrels/train.tsv`, `qrels/dev.tsv` (with a header;
/// score 1). Atomic (`AtomicDirectory`): `out_dir` is either the old data set
/// or the complete new one. Texts must be valid UTF-8. Errors are prefixed
/// by `caller` and name `out_dir`. The writer behind `build_debian_dataset`
/// and `build_synthetic_dataset`.
void write_beir_dataset(const std::string& out_dir, const std::vector<BeirPassage>& corpus,
                        const std::vector<BeirQuery>& train, const std::vector<BeirQuery>& dev,
                        const char* caller = "write_beir_dataset");

}  // namespace contaccum
