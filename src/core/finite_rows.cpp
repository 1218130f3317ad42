#include "contaccum/core/finite_rows.h"

#include <torch/torch.h>

namespace contaccum {

int64_t first_non_finite_row(const torch::Tensor& rows) {
  if (!rows.defined() || rows.numel() == 0) return -1;
  const auto finite = torch::isfinite(rows);
  if (finite.all().item<bool>()) return -1;
  const auto bad = finite.logical_not().reshape({rows.size(0), -1}).any(1).nonzero();
  return bad[0][0].item<int64_t>();
}

}  // namespace contaccum
