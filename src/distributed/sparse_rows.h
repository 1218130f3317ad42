#pragma once
// Internal: the rows of a gradient that hold anything, for summing only those
// over the ranks (`DistributedOptions::sparse_rows`).

#include <torch/types.h>

#include <cstdint>

namespace contaccum::detail {

/// Fewer rows than this and a tensor is summed whole: its flags would cost
/// about as much as its rows.
constexpr int64_t kSparseRowsMin = 64;

/// Whether `tensor` may be summed by rows: on the CPU, contiguous, 2 or more
/// dimensions, at least `kSparseRowsMin` rows.
bool sparse_rows_candidate(const torch::Tensor& tensor);

/// Writes into `flags[r]` 1 when row `r` of `tensor` (its first dimension)
/// has a bit set, else 0: by bits, not values, so that a row of -0.0 is sent
/// too and every row left out is +0.0 on every rank, whose sum is itself.
/// One pass, no temporary; `tensor` must be a `sparse_rows_candidate`.
void flag_nonzero_rows(const torch::Tensor& tensor, float* flags);

}  // namespace contaccum::detail
