#pragma once

#include "contaccum/data/collator.h"
#include "contaccum/data/passage_source.h"
#include "contaccum/data/readers.h"
#include "contaccum/data/text_table.h"
#include "contaccum/distributed/collective.h"
#include "contaccum/eval/bm25.h"
#include "contaccum/eval/embeddings.h"
#include "contaccum/eval/metrics.h"
#include "contaccum/eval/search.h"
#include "contaccum/eval/vector_index.h"
#include "contaccum/model/dual_encoder.h"

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// Options of `evaluate_dense`.
struct DenseEvalOptions {
  /// Texts encoded per forward pass. Default: 256.
  TORCH_ARG(int64_t, batch_size) = 256;
  /// Token limit of a query. Default: 32.
  TORCH_ARG(int64_t, query_max_length) = 32;
  /// Token limit of a passage. Default: 256.
  TORCH_ARG(int64_t, passage_max_length) = 256;
  /// How the corpus is searched. Default: `SearchOptions()` (k = 100).
  TORCH_ARG(SearchOptions, search) = {};
  /// Which metrics are reported. Default: `MetricsOptions()`.
  TORCH_ARG(MetricsOptions, metrics) = {};
  /// Show the corpus search's progress on stderr. Default: false.
  TORCH_ARG(bool, progress) = false;

 public:
  /// The fields above that are numbers and flags, declared once
  /// (`OptionTable`; `search` and `metrics` have their own options).
  static const OptionTable<DenseEvalOptions>& fields();
};

/// Which tower of a `DualEncoder` encodes.
enum class Tower { Query, Passage };

/// Representations of `texts` from tower `side` of `model`, `[n, dim]`
/// float32 on the CPU, encoded `batch_size` texts at a time (each tokenized
/// with `tokenize(batch, max_length)`). Runs without autograd in eval mode and
/// restores the model's previous mode afterwards, even on error.
torch::Tensor encode_texts(DualEncoder& model, Tower side, const std::vector<std::string>& texts,
                           const TextEncoderFn& tokenize, int64_t max_length, int64_t batch_size);

/// Passage-tower representations of every row of `block` (`full_text`), as
/// `encode_texts`.
torch::Tensor encode_passages(DualEncoder& model, const TextTable& block, const TextEncoderFn& tokenize,
                              int64_t max_length, int64_t batch_size);

/// What an evaluation produced: the metrics, and the ranking they were
/// computed from (row `r` for query row `query_rows[r]`), e.g. for
/// `write_trec_run`.
struct EvalResult {
  RetrievalMetrics metrics;
  SearchResult ranking;
  std::vector<int64_t> query_rows;
};

/// Throws, naming `what` (and `made_by`, where the vectors say they came
/// from), when precomputed passage vectors were encoded by other weights
/// than `model`'s: `model_crc32` is the `weights_crc32` that `encode_corpus`
/// records in embeddings and `build_vector_index` in indexes (0: not
/// recorded, by an older contaccum; not checked).
void check_encoded_by(DualEncoder& model, uint32_t model_crc32, const std::string& what,
                      const std::string& made_by = "");

/// Throws, naming `what`, unless precomputed passage vectors fit `model`:
/// `dim` wide, built for its similarity (`enum_name`), and encoded by its
/// weights (`check_encoded_by`, with `model_crc32` and `made_by`).
void check_passage_vectors(DualEncoder& model, int64_t dim, const std::string& similarity, const std::string& what,
                           uint32_t model_crc32 = 0, const std::string& made_by = "");

/// Dense retrieval evaluation: encodes every judged query (`text`, see
/// `judged_queries`), then the passages (`full_text`) a block of
/// `64 x batch_size` at a time, each block searched exactly on the model's
/// device as it comes (`TopKAccumulator`): memory is one block plus each
/// query's running top k, flat in the corpus size. Scores the ranking.
EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels,
                          const DenseEvalOptions& options = {});

/// `evaluate_dense` over the ranks of `collective` (every rank calls it):
/// each encodes its contiguous share of the corpus, the shares are gathered,
/// and rank 0 encodes the queries, searches and scores; the other ranks get
/// an empty `EvalResult` (`metrics.queries == 0`). At world size 1 it is
/// `evaluate_dense`.
EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                          Collective& collective);

/// `evaluate_dense` over a corpus read a block at a time (`CorpusStream`:
/// from its file, so that nothing of the corpus is held; `TablePassages`:
/// the overloads above), over the ranks of `collective` as above.
EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const PassageSource& corpus,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options,
                          Collective& collective = *local_collective());

/// `evaluate_dense` over precomputed passage embeddings (`contaccum
/// encode`), read a block at a time; refuses embeddings of another width or
/// similarity than the model's.
EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, EmbeddingsReader& embeddings,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options);

/// `evaluate_dense` through a vector index over the corpus's embeddings
/// (`build_vector_index`, `contaccum index build`): the judged queries are
/// encoded and searched in the index, 1,024 at a time. Refuses an index of
/// another width or similarity than the model's; an approximate index gives
/// approximate metrics (a flat one: exactly `evaluate_dense`'s).
EvalResult evaluate_dense(DualEncoder& model, const TextEncoderFn& tokenize, const VectorIndex& index,
                          const TextTable& queries, const std::vector<Qrel>& qrels, const DenseEvalOptions& options);

/// BM25 evaluation: searches `index` (built over the corpus `qrels` refer to)
/// with every judged query's text for `k` results and scores the ranking
/// (with `progress`, a progress display on stderr).
EvalResult evaluate_bm25(const BM25Index& index, const TextTable& queries, const std::vector<Qrel>& qrels,
                         const MetricsOptions& metrics = {}, int64_t k = 100, bool progress = false);

}  // namespace contaccum
