#pragma once

#include "contaccum/data/collator.h"
#include "contaccum/data/passage_source.h"
#include "contaccum/data/text_table.h"
#include "contaccum/distributed/collective.h"
#include "contaccum/model/dual_encoder.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace contaccum {

/// What an embeddings directory holds besides the vectors (`info.json`).
struct EmbeddingsInfo {
  int64_t count = 0;
  int64_t dim = 0;
  /// "dot" or "cosine": how the model scores (cosine vectors are stored
  /// normalised, so inner product search is right for both).
  std::string similarity = "dot";
  /// Where they came from (for people; not checked).
  std::string model, corpus;
  /// `weights_crc32` of the model that encoded them; 0: not recorded (an
  /// older contaccum). Evaluation and search refuse other weights.
  uint32_t model_crc32 = 0;
};

/// A directory of passage embeddings that Python reads without this library:
///
/// - `embeddings.npy`: float32 `[count, dim]`, C order (NumPy format 1.0;
///   `numpy.load(path, mmap_mode="r")`);
/// - `ids.txt`: the passage ids, one per line, in row order;
/// - `info.json`: `{"format": "contaccum-embeddings", "version": 1, "count",
///   "dim", "dtype": "float32", "similarity", "model", "corpus",
///   "model_crc32"}`.
///
/// Written into a temporary sibling directory and renamed when complete
/// (`AtomicDirectory`): a killed writer leaves no half-written embeddings.
class EmbeddingsWriter {
 public:
  /// Starts writing `info.count` rows of `info.dim` floats to `path`.
  EmbeddingsWriter(const std::string& path, EmbeddingsInfo info);
  ~EmbeddingsWriter();
  /// Appends rows `[n, dim]` and their ids.
  void append(const torch::Tensor& rows, const std::vector<std::string>& ids);
  /// Checks that `count` rows came and publishes the directory.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Reads an embeddings directory a block at a time (bounded memory).
class EmbeddingsReader {
 public:
  /// Throws naming the file on a missing or malformed part.
  explicit EmbeddingsReader(const std::string& path);
  const EmbeddingsInfo& info() const { return info_; }
  const std::vector<std::string>& ids() const { return ids_; }
  /// Rows `[begin, end)`, float32 `[end - begin, dim]`.
  torch::Tensor read(int64_t begin, int64_t end);
  /// Every row (for small sets and tests).
  torch::Tensor read_all() { return read(0, info_.count); }

 private:
  std::string path_;
  EmbeddingsInfo info_;
  std::vector<std::string> ids_;
  std::ifstream data_;
  int64_t data_offset_ = 0;
};

/// Options of `encode_corpus`.
struct EncodeCorpusOptions {
  /// Passages per forward pass. Default: 256.
  TORCH_ARG(int64_t, batch_size) = 256;
  /// Token limit of a passage. Default: 256.
  TORCH_ARG(int64_t, passage_max_length) = 256;
  /// Passages encoded and written per block (memory is one block). Default:
  /// 16384.
  TORCH_ARG(int64_t, block_rows) = 16384;
  /// Draw progress on stderr. Default: true.
  TORCH_ARG(bool, progress) = true;
  /// Recorded in info.json. Default: "".
  TORCH_ARG(std::string, model_path) = "";
  TORCH_ARG(std::string, corpus_path) = "";
};

/// Encodes every passage of `corpus` (`full_text`) with the passage tower and
/// writes them with their ids to the embeddings directory `path`, a block of
/// `block_rows` at a time: with a `CorpusStream`, memory is one block
/// whatever the corpus size. With several ranks each encodes a contiguous
/// share of every block and rank 0 writes (the shares are gathered block by
/// block). Returns the rows written.
int64_t encode_corpus(DualEncoder& model, const TextEncoderFn& tokenize, const PassageSource& corpus,
                      const std::string& path, const EncodeCorpusOptions& options = {},
                      Collective& collective = *local_collective());

/// `encode_corpus` of a corpus in memory.
int64_t encode_corpus(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                      const std::string& path, const EncodeCorpusOptions& options = {},
                      Collective& collective = *local_collective());

namespace detail {
/// The "format" of `dir`/info.json (`contaccum-embeddings`,
/// `contaccum-index`), or "" when it has none: what an output directory
/// that may be replaced must hold.
std::string info_json_format(const std::string& dir);
}  // namespace detail

}  // namespace contaccum
