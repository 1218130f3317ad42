#pragma once
// Internal: which rows of a loss group each rank encodes.

#include "contaccum/distributed/collective.h"

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace contaccum::detail {

/// Rows `[begin, end)` of a loss group.
struct RowRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

/// The rows `[0, rows)` of a loss group cut into chunks of `chunk` rows (the
/// last may be smaller), each chunk cut into `world` contiguous parts whose
/// sizes differ by at most one (the first ranks get the extra rows). Rank
/// `r` encodes part `r` of every chunk; the parts in chunk-then-rank order
/// are the rows in their own order, so gathered parts put back in that order
/// are the group exactly as one process holds it. At world size 1 the parts
/// are the chunks.
class RowShards {
 public:
  RowShards(int64_t rows, int64_t chunk, int64_t world) : world_(world) {
    TORCH_CHECK(rows >= 0 && chunk > 0 && world > 0, "RowShards: bad shape");
    for (int64_t begin = 0; begin < rows; begin += chunk) {
      const int64_t size = std::min(chunk, rows - begin);
      int64_t at = begin;
      std::vector<RowRange> parts;
      for (const auto n : contiguous_shares(size, world)) {
        parts.push_back({at, at + n});
        at += n;
      }
      chunks_.push_back(std::move(parts));
    }
  }

  /// Rank `rank`'s non-empty parts, in row order.
  std::vector<RowRange> of(int64_t rank) const {
    std::vector<RowRange> out;
    for (const auto& parts : chunks_) {
      if (parts[static_cast<size_t>(rank)].size() > 0) out.push_back(parts[static_cast<size_t>(rank)]);
    }
    return out;
  }

  /// Rows of each rank.
  std::vector<int64_t> counts() const {
    std::vector<int64_t> out(static_cast<size_t>(world_), 0);
    for (const auto& parts : chunks_) {
      for (size_t r = 0; r < parts.size(); ++r) out[r] += parts[r].size();
    }
    return out;
  }

  /// Puts the ranks' rows (`per_rank[r]`: rank `r`'s parts concatenated)
  /// back in group order.
  torch::Tensor assemble(const std::vector<torch::Tensor>& per_rank) const {
    std::vector<torch::Tensor> pieces;
    std::vector<int64_t> offset(static_cast<size_t>(world_), 0);
    for (const auto& parts : chunks_) {
      for (size_t r = 0; r < parts.size(); ++r) {
        if (parts[r].size() == 0) continue;
        pieces.push_back(per_rank[r].slice(0, offset[r], offset[r] + parts[r].size()));
        offset[r] += parts[r].size();
      }
    }
    return pieces.size() == 1 ? pieces[0] : torch::cat(pieces);
  }

 private:
  int64_t world_;
  std::vector<std::vector<RowRange>> chunks_;
};

}  // namespace contaccum::detail
