#pragma once

#include "contaccum/core/option_table.h"
#include "contaccum/core/similarity.h"
#include "contaccum/loss/identity_mask.h"

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace contaccum {

/// Options of the InfoNCE loss, shared by `info_nce` and `InfoNCE`.
struct InfoNCEOptions {
  /// Score function. Default: `Similarity::Dot`.
  TORCH_ARG(Similarity, similarity) = Similarity::Dot;
  /// Scores are divided by it; must be > 0. Default: 1.0 (DPR, ContAccum).
  TORCH_ARG(double, temperature) = 1.0;
  /// Compute the loss one `tile_rows x tile_columns` tile of the score matrix
  /// at a time, with a running log-sum-exp per row, and recompute the tiles
  /// in the backward pass (Inf-CL's scheme): the loss then needs one tile of
  /// memory beyond its inputs and their gradients, whatever the batch and
  /// bank sizes. Equal to the untiled loss up to floating-point reassociation
  /// (the sums run in another order). False: the whole score matrix, its
  /// softmax and their gradients are built through autograd ops. Default:
  /// true.
  TORCH_ARG(bool, tiled) = true;
  /// Rows per tile; must be > 0. Default: 1024.
  TORCH_ARG(int64_t, tile_rows) = 1024;
  /// Columns per tile; must be > 0. Default: 4096 (a 16 MiB tile in float32
  /// with the default rows).
  TORCH_ARG(int64_t, tile_columns) = 4096;
  /// Also return the current rows' score matrix (`InfoNCEResult::scores`),
  /// which costs its full size. Default: false.
  TORCH_ARG(bool, return_scores) = false;

 public:
  /// Every field above, declared once (`OptionTable`): names, rules and
  /// which of them change the loss's numbers.
  static const OptionTable<InfoNCEOptions>& fields();
  /// Throws, naming the option and its value, when one is out of range.
  void validate() const;
};

/// Detached representations from memory banks that join the score matrix as
/// constants. Both tensors may be undefined (no bank).
struct InfoNCEBank {
  /// Extra rows `[m, d]`: banked queries. Row `j` targets `passages[j][0]`,
  /// so `passages` must then hold the same `m` examples.
  torch::Tensor queries;
  /// Banked passage groups `[m_p, g_b, d]` (or `[m_p, d]` for `g_b = 1`):
  /// slot 0 is the example's positive, slots 1.. its hard negatives.
  torch::Tensor passages;
  /// When true (default) banked passages are extra negative columns for every
  /// row. When false they only serve as the target of their own banked query
  /// (the "no passage bank" ablation: banked queries still push on the
  /// current passages, but no row sees banked passages as negatives).
  bool passages_as_negatives = true;
  /// Optional `[m]`, only read when `queries` is defined and
  /// `passages_as_negatives` is true: for each banked query, the log-sum-exp
  /// of its scores (divided by the temperature) over every banked passage
  /// column. Those scores are constants, so this is all the loss needs of the
  /// `m x m (1 + h)` bank-by-bank block; `BankScoreCache` keeps it up to date
  /// as the banks change. Undefined (default): `info_nce` computes it, which
  /// costs a product of the bank with itself.
  torch::Tensor row_logsumexp;
  /// Cosine only: every bank row (queries and passages) already has unit
  /// norm, as `Strategy` stores them, so the loss scores them as they are
  /// instead of normalising a copy of the bank on every call. Default: false.
  bool normalized = false;
  /// Also return the scores between the current rows and the banks
  /// (`InfoNCEResult::bank_scores`), from which `BankScoreCache::update`
  /// takes every product it needs once these rows are enqueued. Only the
  /// tiled loss returns them, and only when it keeps its scores for the
  /// backward pass (they fit in one tile); otherwise they stay undefined.
  /// Default: false.
  bool return_scores = false;
  /// Identities for false-negative masking (read only when the call's
  /// `InfoNCEIds` are given): `[m_p, g_b]` int64, the passage identity of each
  /// banked passage vector, and `[m, P_b]` int64 (`-1` padding), each banked
  /// query's positives. Undefined: unknown identities, never masked.
  torch::Tensor passage_ids = {}, query_positive_ids = {};
  /// Optional `[m]`, only read when `queries` is defined and the loss scores
  /// the bank's rows as they are (dot product, or cosine with `normalized`):
  /// each banked query's dot product with its own banked positive
  /// (`passages[j][0]`), as `banked_target_dots` computes it, in the loss's
  /// type. They are constants; `BankScoreCache` keeps them (computed once per
  /// enqueued row), which spares the loss a pass over both banks on every
  /// call. Undefined (default), or of another size or type: `info_nce`
  /// computes them.
  torch::Tensor row_target_dot = {};
};

/// Passage identities of a call's current rows, for masking false negatives
/// (see `IdentityMask`): a column whose passage is one of a row's positives,
/// other than the row's target, is not a negative of that row. Applies to
/// every column kind (in-batch positives, hard negatives, the passage bank)
/// and to the banked query rows against the current passages. Undefined
/// (default): nothing is masked, and the loss is bit for bit the unmasked
/// one.
struct InfoNCEIds {
  /// `[n, g]` (or `[n * g]`) int64: the identity of each current passage
  /// vector, in the `passages` input's order.
  torch::Tensor passages;
  /// `[n, P]` int64, `-1` padding: every positive of each current query (its
  /// target's identity among them).
  torch::Tensor positives;
  bool defined() const { return passages.defined() && positives.defined(); }
};

/// How many score entries a call masked as false negatives, by the kind of
/// column (see `InfoNCEIds`).
struct MaskedColumns {
  /// Current queries against other examples' positives.
  int64_t in_batch = 0;
  /// Current queries against current hard negatives.
  int64_t hard_negative = 0;
  /// Current queries against banked passages.
  int64_t bank = 0;
  /// Banked queries against current passages.
  int64_t banked_query = 0;
  int64_t total() const { return in_batch + hard_negative + bank + banked_query; }
  MaskedColumns& operator+=(const MaskedColumns& o) {
    in_batch += o.in_batch;
    hard_negative += o.hard_negative;
    bank += o.bank;
    banked_query += o.banked_query;
    return *this;
  }
};

/// Scores between a call's current rows and its banks, each divided by the
/// temperature, as the loss computed them (the same numbers its log-sum-exps
/// and gradients use). Row and column orders are the inputs': current
/// examples in order, each with its `g` passage vectors; bank rows and
/// columns in storage order, `g_b` vectors per banked passage group.
struct InfoNCEBankScores {
  /// `[n, n g]`: current queries against the current passage vectors.
  torch::Tensor current_by_current;
  /// `[n, m g_b]`: current queries against the passage bank's vectors.
  torch::Tensor current_by_bank;
  /// `[m, n g]`: banked queries against the current passage vectors.
  torch::Tensor bank_by_current;
  /// `[n, d]` and `[n, g, d]`: the current queries and passage vectors the
  /// scores were made from (unit rows for cosine), detached: what a bank
  /// stores of this call's rows, so that the caller need not normalise them
  /// again (`Strategy` enqueues these, the same bits as its own unit rows).
  torch::Tensor queries = {}, passages = {};
  bool defined() const { return current_by_current.defined(); }
};

/// What `info_nce` computed.
struct InfoNCEResult {
  /// Mean cross-entropy over all rows (current queries, then banked queries).
  torch::Tensor loss;
  /// Only with `InfoNCEOptions::return_scores`, detached: the current
  /// queries' rows of the score matrix `S / temperature`, in the spec's
  /// layout: columns `[positives; bank positives; hard negatives; bank
  /// hard negatives]` (hard negatives example-major); the target of row `r`
  /// is column `r`; masked-out entries are `-inf`. The banked queries' rows
  /// are never materialised (see `InfoNCEBank::row_logsumexp`).
  torch::Tensor scores;
  /// Negatives each current query row sees, on average: its columns minus
  /// its target and minus the columns masked for it.
  double negatives_per_query = 0;
  /// The entries masked as false negatives (only with `InfoNCEIds`).
  MaskedColumns masked;
  /// Only with `InfoNCEBank::return_scores` (see there): the current rows'
  /// scores against the banks, detached.
  InfoNCEBankScores bank_scores;
};

/// InfoNCE over in-batch negatives, hard negatives and bank entries.
///
/// `queries` `[n, d]`; `passages` `[n, 1 + h, d]` (or `[n, d]` for `h = 0`),
/// slot 0 the positive of the same example, then its `h` hard negatives.
/// The bank is never copied: its score blocks are computed against its
/// storage directly. A banked query's row is reduced to three parts: its
/// scores against the current passages (the only ones with a gradient), the
/// log-sum-exp over the bank's own columns, and its target score.
/// With `ids`, false negatives are masked (see `InfoNCEIds`).
InfoNCEResult info_nce(const torch::Tensor& queries, const torch::Tensor& passages, const InfoNCEOptions& options = {},
                       const InfoNCEBank& bank = {}, const InfoNCEIds& ids = {});

/// For each banked query (`bank_queries` `[m, d]`), the log-sum-exp of its
/// scores divided by the temperature over every vector of `bank_passages`
/// (`[m_p, g, d]` or `[m_p, d]`): `InfoNCEBank::row_logsumexp` computed from
/// scratch, without gradients, in tiles of `rows_per_block` rows by
/// `columns_per_block` columns. With `mask` (`IdentityMask::of(the banked
/// queries' positives, the banked passages' ids, g, 0)`), its entries are
/// left out.
torch::Tensor bank_row_logsumexp(const torch::Tensor& bank_queries, const torch::Tensor& bank_passages,
                                 const InfoNCEOptions& options = {}, int64_t rows_per_block = 1024,
                                 int64_t columns_per_block = 4096, const IdentityMask& mask = {});

/// Row `j` of `rows` (`[m, d]`) dotted with row `j` of `positives` (`[m,
/// d]`), computed in `type`: a banked query's target score before the
/// temperature. In blocks of rows, so that the elementwise product is never
/// an `[m, d]` temporary; each row's value depends only on its two rows (for
/// `d` up to 32,768), so a row computed alone when it is enqueued equals the
/// same row computed with the whole bank. Float32 and float64 rows on the CPU
/// are summed in an order fixed by the code (eight partial sums), the same
/// bits on every CPU.
torch::Tensor banked_target_dots(const torch::Tensor& rows, const torch::Tensor& positives, torch::ScalarType type);

/// Module form of `info_nce` (no parameters), for use in `Sequential`-style
/// code and to carry the options.
class InfoNCEImpl : public torch::nn::Cloneable<InfoNCEImpl> {
 public:
  explicit InfoNCEImpl(InfoNCEOptions options = {});
  void reset() override;
  /// Returns `info_nce(queries, passages, options, bank).loss`.
  torch::Tensor forward(const torch::Tensor& queries, const torch::Tensor& passages, const InfoNCEBank& bank = {});
  InfoNCEOptions options;
};

/// Module holder of `InfoNCEImpl`.
TORCH_MODULE(InfoNCE);

}  // namespace contaccum
