#include "contaccum/loss/identity_mask.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace contaccum {

namespace {
torch::Tensor cpu_longs(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.defined(), "IdentityMask: ", name, " must be defined");
  TORCH_CHECK(t.scalar_type() == torch::kLong, "IdentityMask: ", name, " must be int64, got ", t.scalar_type());
  // No call on a contiguous CPU tensor, the usual case (`to` is one even
  // when it returns the tensor itself).
  return (t.device().is_cpu() ? t : t.to(torch::kCPU)).contiguous();
}
}  // namespace

IdentityMask IdentityMask::of(const torch::Tensor& row_positives, const torch::Tensor& column_ids,
                              int64_t target_stride, int64_t target_offset) {
  TORCH_CHECK(target_stride >= 0, "IdentityMask: target_stride must be >= 0, got ", target_stride);
  const auto positives = cpu_longs(row_positives, "row_positives");
  const auto ids = cpu_longs(column_ids, "column_ids");
  TORCH_CHECK(positives.dim() == 2, "IdentityMask: row_positives must be [rows, positives], got ", positives.sizes());
  const int64_t r = positives.size(0), p = positives.size(1), c = ids.numel();
  IdentityMask mask;
  if (r == 0 || p == 0 || c == 0) return mask;
  const int64_t* pos = positives.data_ptr<int64_t>();
  const int64_t* col = ids.data_ptr<int64_t>();
  std::vector<std::pair<int64_t, int64_t>> pairs;
  auto keep = [&](int64_t i, int64_t j) {
    if (target_stride > 0 && j == i * target_stride + target_offset) return;
    pairs.emplace_back(i, j);
  };
  // A lookup table of the smaller side, the other side scanned against it:
  // a micro-batch's rows against a bank's columns, or a bank's rows against
  // a micro-batch's columns, cost the bank's size in lookups, not in inserts.
  if (r * p <= c) {
    std::unordered_map<int64_t, std::vector<int64_t>> rows_of;  // identity -> rows with it among their positives
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t k = 0; k < p; ++k) {
        const int64_t id = pos[i * p + k];
        if (id < 0) continue;
        auto& list = rows_of[id];
        if (list.empty() || list.back() != i) list.push_back(i);
      }
    }
    for (int64_t j = 0; j < c; ++j) {
      if (col[j] < 0) continue;
      const auto it = rows_of.find(col[j]);
      if (it == rows_of.end()) continue;
      for (const int64_t i : it->second) keep(i, j);
    }
  } else {
    std::unordered_map<int64_t, std::vector<int64_t>> columns_of;  // identity -> columns
    for (int64_t j = 0; j < c; ++j) {
      if (col[j] >= 0) columns_of[col[j]].push_back(j);
    }
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t k = 0; k < p; ++k) {
        const int64_t id = pos[i * p + k];
        if (id < 0) continue;
        const auto it = columns_of.find(id);
        if (it == columns_of.end()) continue;
        for (const int64_t j : it->second) keep(i, j);
      }
    }
  }
  if (pairs.empty()) return mask;
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  const auto n = static_cast<int64_t>(pairs.size());
  mask.rows_ = torch::empty({n}, torch::kLong);
  mask.columns_ = torch::empty({n}, torch::kLong);
  auto* rr = mask.rows_.data_ptr<int64_t>();
  auto* cc = mask.columns_.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k) {
    rr[k] = pairs[static_cast<size_t>(k)].first;
    cc[k] = pairs[static_cast<size_t>(k)].second;
  }
  return mask;
}

IdentityMask IdentityMask::from_pairs(torch::Tensor rows, torch::Tensor columns) {
  IdentityMask mask;
  if (!rows.defined() || rows.numel() == 0) return mask;
  rows = cpu_longs(rows, "rows");
  columns = cpu_longs(columns, "columns");
  TORCH_CHECK(rows.dim() == 1 && columns.sizes() == rows.sizes(),
              "IdentityMask::from_pairs: rows and columns must be [k] each, got ", rows.sizes(), " and ",
              columns.sizes());
  mask.rows_ = rows;
  mask.columns_ = columns;
  return mask;
}

void IdentityMask::apply(torch::Tensor& block, int64_t row0, int64_t column0, bool transposed) const {
  if (empty()) return;
  TORCH_CHECK(block.dim() == 2, "IdentityMask::apply: block must be 2-D, got ", block.sizes());
  const int64_t rows = transposed ? block.size(1) : block.size(0);
  const int64_t columns = transposed ? block.size(0) : block.size(1);
  const int64_t* rr = rows_.data_ptr<int64_t>();
  const int64_t* cc = columns_.data_ptr<int64_t>();
  const int64_t* first = std::lower_bound(rr, rr + size(), row0);
  std::vector<int64_t> at_rows, at_columns;
  for (const int64_t* it = first; it != rr + size() && *it < row0 + rows; ++it) {
    const int64_t column = cc[it - rr];
    if (column < column0 || column >= column0 + columns) continue;
    at_rows.push_back(*it - row0);
    at_columns.push_back(column - column0);
  }
  if (at_rows.empty()) return;
  const auto device = block.device();
  auto r = torch::tensor(at_rows, torch::kLong).to(device);
  auto c = torch::tensor(at_columns, torch::kLong).to(device);
  const auto ninf = -std::numeric_limits<double>::infinity();
  if (transposed) {
    block.index_put_({c, r}, ninf);
  } else {
    block.index_put_({r, c}, ninf);
  }
}

}  // namespace contaccum
