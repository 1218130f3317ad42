#pragma once

#include "contaccum/loss/info_nce.h"
#include "contaccum/memory/memory_bank.h"

#include <torch/arg.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <vector>

namespace contaccum {

/// Options of `BankScoreCache`.
struct BankScoreCacheOptions {
  /* implicit */ BankScoreCacheOptions(int64_t block_slots = 8) : block_slots_(block_slots) {}
  /// Bank slots per cached block. A write recomputes the blocks it touches,
  /// so writes of `block_slots` rows aligned to a block cost least (set it to
  /// the rows enqueued at a time: the micro-batch). Must be > 0. Default: 8.
  TORCH_ARG(int64_t, block_slots);
  /// Score function and temperature, as in the loss. Default: dot product,
  /// temperature 1.
  TORCH_ARG(InfoNCEOptions, loss) = {};
  /// Cosine only: the banks' rows already have unit norm (`Strategy` stores
  /// them so), so they are scored as they are, without normalised copies.
  /// Default: false.
  TORCH_ARG(bool, normalized_rows) = false;
};

/// Keeps `InfoNCEBank::row_logsumexp` of a query bank against a passage bank
/// up to date as the banks change, at a cost proportional to what changed.
///
/// The banked queries' scores against the banked passages are constants, but
/// recomputing them for every micro-batch costs `m x m (1 + h) x d`, which
/// with `m` in the thousands outweighs a small encoder. The cache splits the
/// passage bank into blocks of `block_slots` slots and keeps, per banked
/// query, a binary tree of log-sum-exps: leaves over each block, each inner
/// node the log-add-exp of its children, the root over the whole bank. A
/// write of `w` slots recomputes `w` rows and the touched blocks' leaves
/// (`~2 w m (1 + h) d`) and the `log2(blocks)` nodes above them; nothing is
/// ever subtracted, so there is no cancellation. Memory: `2 x capacity x
/// 2^ceil(log2(capacity / block_slots))` numbers. Agrees with
/// `bank_row_logsumexp` up to floating-point reassociation.
///
/// Both banks must receive the same rows in the same calls (as `Strategy`
/// does), so that storage slot `j` holds the same example in both.
///
/// When both banks hold identities (`MemoryBank::ids`: the passage bank each
/// vector's passage identity, the query bank each query's positives), the
/// false negatives are left out of every log-sum-exp: a banked query's
/// scores against banked passages that are one of its positives, other than
/// its own banked positive (`IdentityMask`), as the loss masks them.
class BankScoreCache {
 public:
  explicit BankScoreCache(BankScoreCacheOptions options = {});

  /// Call after `count` rows were enqueued into both banks, starting at
  /// storage slot `first_slot` (the banks' `head()` before the write).
  void update(const MemoryBank& queries, const MemoryBank& passages, int64_t first_slot, int64_t count);
  /// The same, taking every score it needs from `scores`, what the loss
  /// computed for the enqueued rows against the banks as they were before
  /// the write (`InfoNCEBank::return_scores`): the enqueued rows against
  /// every slot and every row against the enqueued columns are then already
  /// known, and the update multiplies nothing (only a block that mixes
  /// written and older slots is scored here). Scores that do not describe
  /// this write (undefined, or shaped for other banks) are ignored and the
  /// update multiplies as above. Both ways agree up to floating-point
  /// reassociation.
  void update(const MemoryBank& queries, const MemoryBank& passages, int64_t first_slot, int64_t count,
              const InfoNCEBankScores& scores);
  /// Recomputes everything from the banks' contents (after loading them).
  void rebuild(const MemoryBank& queries, const MemoryBank& passages);
  /// Forgets everything (call when the banks are cleared).
  void clear();

  /// Writes the cached trees (for checkpoints). `rebuild` computes the same
  /// values in another operand order, so only a saved cache lets a resumed
  /// run continue with the bits of the run that was interrupted.
  void save(torch::serialize::OutputArchive& archive) const;
  /// Restores what `save` wrote for these banks; throws when it does not fit
  /// them (another capacity, size or block size).
  void load(torch::serialize::InputArchive& archive, const MemoryBank& queries, const MemoryBank& passages);

  /// `[size]`: each banked query's log-sum-exp over every banked passage
  /// column, in storage order; undefined while the banks are empty.
  torch::Tensor row_logsumexp() const;
  /// `[size]`: each banked query's dot product with its own banked positive
  /// (`InfoNCEBank::row_target_dot`, computed once per written row, as
  /// `banked_target_dots` computes it); undefined while the banks are empty
  /// or when the rows are normalised as copies (cosine without
  /// `normalized_rows`).
  torch::Tensor row_target_dot() const;
  /// Valid rows (the banks' size at the last update).
  int64_t size() const { return size_; }
  const BankScoreCacheOptions& options() const { return options_; }

 private:
  void check_banks(const MemoryBank& queries, const MemoryBank& passages) const;
  bool normalizes() const {  // rows need normalised copies
    return options_.loss().similarity() == Similarity::Cosine && !options_.normalized_rows();
  }
  torch::Tensor rows(const MemoryBank& queries) const;  // [size, d], normalised for cosine
  torch::Tensor columns(const MemoryBank& passages, int64_t begin, int64_t end) const;  // [(end - begin) g, d]
  // Banked queries [row_begin, row_end) against the passage vectors of slots
  // [begin, end): the false negatives (empty when the banks hold no ids).
  IdentityMask false_negatives(const MemoryBank& queries, const MemoryBank& passages, int64_t row_begin,
                               int64_t row_end, int64_t begin, int64_t end) const;
  // Scores of one write, from the loss's: the written rows against every
  // slot, and every row against the written columns.
  struct WrittenScores {
    struct Run {
      int64_t first_slot, first_example, count;
    };
    std::vector<Run> runs;  // written slots: one run, two when the write wraps
    // The written rows against every slot [count, size, group], assembled
    // in a reused buffer; undefined when `in_place`.
    torch::Tensor written_by_all;
    torch::Tensor rows_buffer;  // its storage
    // The loss's own, as it returned them (no copy): the rows banked before
    // the write against the written examples' columns [size_before, count,
    // group], the written rows against them [count, count, group], and the
    // written rows against the rows banked before [count, size_before,
    // group].
    torch::Tensor before_by_written, written_by_written, written_by_before;
    // The write filled whole blocks of full banks that keep whole groups:
    // every leaf of a written row is then one row of `written_by_before`
    // or, for a written block, of `written_by_written`, read in place.
    bool in_place = false;
    // The example written to slot `begin` when slots [begin, end) were all
    // written by this update, else -1.
    int64_t example_at(int64_t begin, int64_t end) const;
  };
  bool scores_fit(const InfoNCEBankScores& scores, const MemoryBank& queries, const MemoryBank& passages,
                  int64_t first_slot, int64_t count, int64_t size_before) const;
  void assemble_written(const InfoNCEBankScores& scores, int64_t group, int64_t first_slot, int64_t count,
                        int64_t size_before);
  // Each row's log-sum-exp over the written slots of block [begin, end),
  // into `leaf`, from the loss's scores.
  void written_block_logsumexp(int64_t first_example, int64_t count, torch::Tensor leaf);
  void recompute_blocks(const MemoryBank& queries, const MemoryBank& passages, int64_t first_block, int64_t last_block,
                        const WrittenScores* written);
  void recompute_rows(const MemoryBank& queries, const MemoryBank& passages, int64_t begin, int64_t end,
                      const WrittenScores* written);
  void refresh_parents(int64_t first_leaf, int64_t last_leaf, int64_t begin, int64_t end);
  void recompute_targets(const MemoryBank& queries, const MemoryBank& passages, int64_t begin, int64_t end);
  torch::Tensor empty_tree(int64_t capacity, const torch::TensorOptions& options) const;

  BankScoreCacheOptions options_;
  // [2 L, capacity], L = leaves (a power of two >= blocks): node j of every
  // row's tree is row j (root 1, leaf b at L + b); -inf where empty.
  torch::Tensor tree_;
  int64_t size_ = 0;
  WrittenScores written_;
  // The log-sum-exps' element-wise pass (every path: update, multiply,
  // rebuild), reused between calls.
  torch::Tensor logsumexp_scratch_;
  // [capacity]: each slot's query against its own positive (row_target_dot).
  torch::Tensor target_dots_;
};

}  // namespace contaccum
