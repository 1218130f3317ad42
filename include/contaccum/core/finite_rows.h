#pragma once

#include <torch/types.h>

namespace contaccum {

/// The first row (index along dimension 0) of `rows` that holds a NaN or an
/// infinity, or -1 when every element is finite (and for an undefined or
/// empty tensor). For readers that refuse non-finite vectors and name the
/// row: embeddings, banks in checkpoints.
int64_t first_non_finite_row(const torch::Tensor& rows);

}  // namespace contaccum
