#pragma once

#include "contaccum/eval/embeddings.h"
#include "contaccum/eval/search.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace contaccum {

/// Kinds of `VectorIndex`; every kind scores by inner product.
enum class IndexType {
  /// Every vector, searched exactly by `exact_search` (the same ranking as
  /// evaluation's, bit for bit); stored as a FAISS `IndexFlatIP`.
  Flat,
  /// FAISS `IndexIVFFlat`: k-means cells with inverted lists; a query scores
  /// the vectors of its `nprobe` nearest of `nlist` cells.
  Ivf,
  /// FAISS `IndexHNSWFlat`: a navigable small-world graph searched greedily
  /// with a candidate list of `ef_search`.
  Hnsw,
};

/// `IndexType` from "flat", "ivf" or "hnsw"; throws naming anything else.
IndexType index_type(const std::string& name);
/// "flat", "ivf" or "hnsw".
std::string index_type_name(IndexType type);

/// Options of `VectorIndex`.
struct VectorIndexOptions {
  /// Kind of index. Default: `IndexType::Flat`.
  TORCH_ARG(IndexType, type) = IndexType::Flat;
  /// "dot" or "cosine": how the vectors' model scores. Both are searched by
  /// inner product; with "cosine" every added row and query must have unit
  /// norm (a cosine model's embeddings do). Default: "dot".
  TORCH_ARG(std::string, similarity) = "dot";
  /// IVF cells; 0 picks `4 sqrt(n)` for the `n` training rows, at most
  /// `n / 39` (FAISS's k-means wants 39 rows per cell). Default: 0.
  TORCH_ARG(int64_t, nlist) = 0;
  /// IVF cells visited per query (recall against speed). Default: 32.
  TORCH_ARG(int64_t, nprobe) = 32;
  /// HNSW links per vector (memory and recall). Default: 32.
  TORCH_ARG(int64_t, hnsw_m) = 32;
  /// HNSW candidate list while adding (build time and recall). Default: 80.
  TORCH_ARG(int64_t, ef_construction) = 80;
  /// HNSW candidate list while searching, raised to k when smaller (recall
  /// against speed). Default: 128.
  TORCH_ARG(int64_t, ef_search) = 128;
  /// Rows IVF's k-means trains on, a seeded sample of the data given to
  /// `build_vector_index`; 0: `256 nlist` rows (all when fewer). Default: 0.
  TORCH_ARG(int64_t, train_rows) = 0;
  /// Seed of the k-means and of the training sample. Default: 1234.
  TORCH_ARG(int64_t, seed) = 1234;
};

/// An index over passage embeddings for approximate (or, flat, exact) inner
/// product search, on FAISS. Rows are numbered in the order they were added;
/// their ids travel with the index when given.
///
/// ```
/// VectorIndex index(dim, VectorIndexOptions().type(IndexType::Hnsw));
/// index.add(passages);
/// auto top = index.search(queries, 10);  // SearchResult, rows best first
/// index.save("debpkg.index");
/// auto again = VectorIndex::load("debpkg.index");
/// ```
///
/// Saved as a directory (written atomically): `index.faiss` (FAISS's own
/// format: `faiss.read_index` reads it), `ids.txt` and `info.json`
/// (`{"format": "contaccum-index", "version": 1, "type", "similarity",
/// "count", "dim", "nlist", "nprobe", "hnsw_m", "ef_search",
/// "index_crc32"}`), which `load` checks against the FAISS file.
class VectorIndex {
 public:
  /// An empty index of `dim`-wide vectors.
  VectorIndex(int64_t dim, VectorIndexOptions options = {});
  ~VectorIndex();
  VectorIndex(VectorIndex&&) noexcept;
  VectorIndex& operator=(VectorIndex&&) noexcept;

  /// IVF: learns the `nlist` cells from `sample` `[n, dim]` (spherical
  /// k-means for cosine); must come before `add`. Flat and HNSW: nothing.
  void train(const torch::Tensor& sample);
  bool is_trained() const;
  /// Appends `rows` `[n, dim]` (any float dtype, finite) and, when the index
  /// keeps ids, their `ids` (give ids with every `add` or with none).
  void add(const torch::Tensor& rows, const std::vector<std::string>& ids = {});
  /// The best `min(k, size())` rows for each query of `queries` `[Q, dim]`,
  /// best first: float32 scores, int64 rows. Approximate indexes may find
  /// fewer; missing entries are row -1 with score -inf.
  SearchResult search(const torch::Tensor& queries, int64_t k) const;

  /// Search-time knobs (also saved): IVF cells visited, HNSW candidates.
  void set_nprobe(int64_t nprobe);
  void set_ef_search(int64_t ef_search);

  int64_t size() const;
  int64_t dim() const;
  const VectorIndexOptions& options() const;
  /// Passage ids by row (empty when none were given).
  const std::vector<std::string>& ids() const;
  /// `weights_crc32` of the model whose embeddings it holds (saved; set by
  /// `build_vector_index` from the embeddings); 0: not recorded.
  uint32_t model_crc32() const;
  void set_model_crc32(uint32_t crc);
  /// Bytes of what search reads: vectors, inverted lists and their ids,
  /// centroids, graph links.
  int64_t memory_bytes() const;

  /// Writes the index directory `path` atomically (replacing one there).
  void save(const std::string& path) const;
  /// Reads an index directory; throws naming the file on a missing, damaged
  /// or inconsistent part, or a FAISS index that does not score by inner
  /// product.
  static VectorIndex load(const std::string& path);

 private:
  struct Impl;
  explicit VectorIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Builds an index of `options.type()` over an embeddings directory (`contaccum
/// encode`), reading it a block of `block_rows` at a time: IVF first trains on
/// a seeded sample of `train_rows` rows. Similarity, width and ids come from
/// the embeddings. With `progress`, shows it on stderr.
VectorIndex build_vector_index(EmbeddingsReader& embeddings, VectorIndexOptions options, bool progress = false,
                               int64_t block_rows = 65536);

}  // namespace contaccum
