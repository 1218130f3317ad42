#pragma once

// Views made with one ATen call, or none. `t.narrow(dim, start, length)` makes three
// (narrow, then slice, then as_strided), each a fixed dispatch cost of a
// fraction of a microsecond whatever the tensor's size; the loss's tiles and
// the score cache's update take a few dozen such views of small tensors a
// micro-batch, where those calls cost more than the arithmetic on the views
// (bench/banks counts a training step's ATen calls).

#include <torch/types.h>

namespace contaccum {

/// `t.narrow(dim, start, length)`, the same view (sizes, strides, storage
/// offset), made with one `as_strided`, or `t` itself when the range is the
/// whole dimension. For code that records no autograd
/// graph through the view (inside a custom autograd function, or with grad
/// mode off): the view of a tensor that requires grad would be backed by
/// as_strided's backward pass, not narrow's.
inline torch::Tensor narrow_view(const torch::Tensor& t, int64_t dim, int64_t start, int64_t length) {
  TORCH_CHECK(dim >= 0 && dim < t.dim() && start >= 0 && length >= 0 && start + length <= t.size(dim), "narrow_view: [",
              start, ", ", start + length, ") of dimension ", dim, " is outside ", t.sizes());
  // The whole dimension: the tensor itself, no call at all (a loss whose
  // scores fit one tile takes every tile view whole).
  if (start == 0 && length == t.size(dim)) return t;
  auto sizes = t.sizes().vec();
  sizes[static_cast<size_t>(dim)] = length;
  return t.as_strided(sizes, t.strides(), t.storage_offset() + start * t.stride(dim));
}

/// `t.detach()` where `t` requires grad, else `t` itself, with no call: the
/// banks' rows and the loss's other constants never record a graph, and
/// detaching them on every micro-batch is a dispatch each for nothing.
inline torch::Tensor detached(const torch::Tensor& t) { return t.requires_grad() ? t.detach() : t; }

}  // namespace contaccum
