#pragma once
// Where a dense command (`eval`, `search`) takes its passage vectors from:
// --embeddings EMB (`contaccum encode`), --index IDX (`contaccum index
// build`, with its search knobs), or neither: the corpus, encoded.

#include <contaccum/contaccum.h>

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

namespace contaccum::cli {

class PassageVectorsArgs {
 public:
  /// Adds --embeddings, --index, --nprobe and --ef-search to `app`;
  /// `instead_of` says what they replace ("encoding the corpus").
  void add_to(CLI::App* app, const std::string& instead_of);
  /// Throws on a combination that would ignore an option: both sources, or
  /// a knob without --index.
  void check() const;

  bool has_embeddings() const { return !embeddings_.empty(); }
  bool has_index() const { return !index_.empty(); }

  /// --embeddings, its rows checked against `corpus` row for row and, with
  /// a `model`, its vectors against it (`check_passage_vectors`; without,
  /// `evaluate_dense` checks them).
  EmbeddingsReader open_embeddings(const PassageSource& corpus, DualEncoder* model = nullptr) const;
  /// --index, checked as `open_embeddings`, with --nprobe / --ef-search set
  /// (refused when the index is of another type, which would ignore them).
  VectorIndex open_index(const PassageSource& corpus, DualEncoder* model = nullptr) const;

 private:
  std::string embeddings_, index_;
  int64_t nprobe_ = 0, ef_search_ = 0;
};

}  // namespace contaccum::cli
