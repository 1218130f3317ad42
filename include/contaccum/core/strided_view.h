#pragma once

// Views made with one ATen call. `t.narrow(dim, start, length)` makes three
// (narrow, then slice, then as_strided), each a fixed dispatch cost of a
// fraction of a microsecond whatever the tensor's size; the loss's tiles and
// the score cache's update take a few dozen such views of small tensors a
// micro-batch, where those calls cost more than the arithmetic on the views
// (bench/banks counts a training step's ATen calls).

#include <torch/types.h>

namespace contaccum {

/// `t.narrow(dim, start, length)`, the same view (sizes, strides, storage
/// offset), made with one `as_strided`. For code that records no autograd
/// graph through the view (inside a custom autograd function, or with grad
/// mode off): the view of a tensor that requires grad would be backed by
/// as_strided's backward pass, not narrow's.
inline torch::Tensor narrow_view(const torch::Tensor& t, int64_t dim, int64_t start, int64_t length) {
  TORCH_CHECK(dim >= 0 && dim < t.dim() && start >= 0 && length >= 0 && start + length <= t.size(dim), "narrow_view: [",
              start, ", ", start + length, ") of dimension ", dim, " is outside ", t.sizes());
  auto sizes = t.sizes().vec();
  sizes[static_cast<size_t>(dim)] = length;
  return t.as_strided(sizes, t.strides(), t.storage_offset() + start * t.stride(dim));
}

}  // namespace contaccum
