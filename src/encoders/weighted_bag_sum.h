#pragma once

// The bag-of-embeddings pooling as one autograd function whose backward adds
// straight into the table's `.grad`. Internal to src/encoders/.

#include <torch/types.h>

namespace contaccum::detail {

/// `pooled[b] = sum over t of token_weights[b, t] * table[ids[b, t]]`, with
/// tokens equal to `padding_idx` left out; `ids` int64 [batch, seq],
/// `token_weights` [batch * seq] of the table's dtype. On the CPU in float32
/// and float64 the forward sums each bag in token order, each product and
/// sum rounded on its own: on x86-64 the bits of LibTorch 1.13's
/// `embedding_bag` (mode sum), whose loop is scalar, made with vector
/// instructions and shared by
/// bags with the helper thread (`share_out`); on other devices it is
/// `torch::embedding_bag`, and for other CPU types (bf16, fp16, which
/// LibTorch 1.13's embedding_bag refuses) an `index_add_` of the tokens'
/// weighted rows. An id outside the table is refused. The backward
/// adds each token's share
/// `token_weights[t] * grad[b]` into `table.grad()` in place, token by token
/// in order (shared out by columns, so the result does not depend on the
/// thread count), creating a zero `.grad` first when there is none: no
/// table-sized temporary per call, where LibTorch's dense backward allocates
/// and zeroes one and its sparse one a [tokens, dim] one, and autograd then
/// adds either into `.grad`. The gradient of `token_weights` is the dot
/// product of `grad[b]` and the token's row, summed in a fixed order. Where
/// the forward is not the CPU kernel, the backward is the same sums made
/// with ATen's `index_add_` and a row-wise product.
///
/// The table's gradient never passes through autograd: `torch::autograd::grad`
/// with respect to the table sees none, and hooks registered on the table
/// (`register_hook`) do not run. Everything in contaccum (and `backward()`)
/// reads `.grad`.
torch::Tensor weighted_bag_sum(const torch::Tensor& table, const torch::Tensor& ids, const torch::Tensor& token_weights,
                               int64_t padding_idx);

}  // namespace contaccum::detail
