#include "weighted_bag_sum.h"

#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>

#include "contaccum/core/cpu_features.h"
#include "contaccum/core/helper_thread.h"

// Compiled with -ffp-contract=off: each product and sum below is rounded on
// its own, whatever instructions the compiler has, so results do not depend
// on the CPU.

namespace contaccum::detail {
namespace {

constexpr int kLanes = 16;

// A dot product summed in a fixed order: 16 running sums (element i goes to
// lane i % 16), then the lanes added in order. Vectorisable, and the same
// on every CPU.
template <typename T>
T fixed_order_dot(const T* a, const T* b, int64_t n) {
  T lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] = lane[j] + a[i + j] * b[i + j];
  }
  for (int j = 0; i + j < n; ++j) lane[j] = lane[j] + a[i + j] * b[i + j];
  T sum = 0;
  for (int j = 0; j < kLanes; ++j) sum = sum + lane[j];
  return sum;
}

// The bags' sums, in token order: each product and each sum rounded on its
// own, as LibTorch 1.13's embedding_bag (mode sum, per-sample weights) does
// them on the CPU, so the pooled rows are the same bits; written here so that
// they vectorise (LibTorch's loop is scalar and strided) and are the same
// under every LibTorch version.
template <typename T>
__attribute__((always_inline)) inline void sum_bags(T* out, const T* table, const int64_t* ids, const T* weights,
                                                    int64_t first_bag, int64_t end_bag, int64_t seq, int64_t dim,
                                                    int64_t padding_idx) {
  for (int64_t b = first_bag; b < end_bag; ++b) {
    T* __restrict to = out + b * dim;
    for (int64_t c = 0; c < dim; ++c) to[c] = T(0);
    for (int64_t t = b * seq; t < (b + 1) * seq; ++t) {
      if (ids[t] == padding_idx) continue;
      const T w = weights[t];
      const T* __restrict from = table + ids[t] * dim;
      for (int64_t c = 0; c < dim; ++c) to[c] = to[c] + w * from[c];
    }
  }
}

// Each token's share added into the table's gradient rows, token by token in
// order, for the columns [first_column, end_column).
template <typename T>
__attribute__((always_inline)) inline void add_columns(T* table_grad, const T* grad, const int64_t* ids,
                                                       const T* weights, int64_t tokens, int64_t seq, int64_t dim,
                                                       int64_t padding_idx, int64_t first_column, int64_t end_column) {
  for (int64_t t = 0; t < tokens; ++t) {
    if (ids[t] == padding_idx) continue;
    const T w = weights[t];
    const T* __restrict from = grad + (t / seq) * dim;
    T* __restrict to = table_grad + ids[t] * dim;
    for (int64_t c = first_column; c < end_column; ++c) to[c] = to[c] + w * from[c];
  }
}

// The same loops compiled for AVX2: the same roundings (no fused
// multiply-add: -ffp-contract=off), wider.
template <typename T>
__attribute__((target("avx2"))) void sum_bags_avx2(T* out, const T* table, const int64_t* ids, const T* weights,
                                                   int64_t first_bag, int64_t end_bag, int64_t seq, int64_t dim,
                                                   int64_t padding_idx) {
  sum_bags(out, table, ids, weights, first_bag, end_bag, seq, dim, padding_idx);
}

template <typename T>
void sum_bags_baseline(T* out, const T* table, const int64_t* ids, const T* weights, int64_t first_bag, int64_t end_bag,
                       int64_t seq, int64_t dim, int64_t padding_idx) {
  sum_bags(out, table, ids, weights, first_bag, end_bag, seq, dim, padding_idx);
}

template <typename T>
__attribute__((target("avx2"))) void add_columns_avx2(T* table_grad, const T* grad, const int64_t* ids,
                                                      const T* weights, int64_t tokens, int64_t seq, int64_t dim,
                                                      int64_t padding_idx, int64_t first_column, int64_t end_column) {
  add_columns(table_grad, grad, ids, weights, tokens, seq, dim, padding_idx, first_column, end_column);
}

template <typename T>
void add_columns_baseline(T* table_grad, const T* grad, const int64_t* ids, const T* weights, int64_t tokens,
                          int64_t seq, int64_t dim, int64_t padding_idx, int64_t first_column, int64_t end_column) {
  add_columns(table_grad, grad, ids, weights, tokens, seq, dim, padding_idx, first_column, end_column);
}

bool has_avx2() { return cpu_features().avx2; }

// Bags per chunk of the forward, columns per chunk of the backward: chunks
// for the caller and the helper to share (helper_thread.h), each a fixed set
// of outputs, so the thread count changes no bit.
constexpr int64_t kBagsPerChunk = 4;
constexpr int64_t kColumnsPerChunk = 128;  // 512 bytes of a float32 row

template <typename T>
void pool(T* out, const T* table, const int64_t* ids, const T* weights, int64_t batch, int64_t seq, int64_t dim,
          int64_t padding_idx) {
  const auto kernel = has_avx2() ? &sum_bags_avx2<T> : &sum_bags_baseline<T>;
  share_out_ranges(batch, kBagsPerChunk, [&](int64_t begin, int64_t end) {
    kernel(out, table, ids, weights, begin, end, seq, dim, padding_idx);
  });
}

template <typename T>
void add_into_table(T* table_grad, const T* grad, const int64_t* ids, const T* weights, int64_t tokens, int64_t seq,
                    int64_t dim, int64_t padding_idx) {
  const auto kernel = has_avx2() ? &add_columns_avx2<T> : &add_columns_baseline<T>;
  share_out_ranges(dim, kColumnsPerChunk, [&](int64_t begin, int64_t end) {
    kernel(table_grad, grad, ids, weights, tokens, seq, dim, padding_idx, begin, end);
  });
}

template <typename T>
void weight_gradients(T* out, const T* table, const T* grad, const int64_t* ids, int64_t tokens, int64_t seq,
                      int64_t dim, int64_t padding_idx) {
  share_out_ranges(tokens, /*grain=*/256, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      out[t] = ids[t] == padding_idx ? T(0) : fixed_order_dot(grad + (t / seq) * dim, table + ids[t] * dim, dim);
    }
  });
}

// Whether the kernels above apply: every tensor on the CPU, in the table's
// type, float32 or float64, the table contiguous. Elsewhere the forward is
// LibTorch's embedding_bag on a GPU and `pool_with_aten` on the CPU (bf16,
// fp16), and the backward the ATen operations below.
bool own_kernels(const torch::Tensor& table, std::initializer_list<torch::Tensor> others) {
  if (!table.device().is_cpu() || !table.is_contiguous() ||
      (table.scalar_type() != torch::kFloat && table.scalar_type() != torch::kDouble))
    return false;
  return std::all_of(others.begin(), others.end(), [&](const torch::Tensor& t) {
    return t.device().is_cpu() && (t.scalar_type() == torch::kLong || t.scalar_type() == table.scalar_type());
  });
}

// Each token's bag, for the ATen forms below.
torch::Tensor bag_of_each_token(const torch::Tensor& ids, int64_t seq) {
  return torch::arange(ids.numel(), ids.options()).div_(seq, "floor");
}

// The pooling with ATen's operations, for the CPU types LibTorch's
// embedding_bag does not take (bf16 and fp16 in LibTorch 1.13): each bag's
// non-padding tokens' weighted rows added in token order.
torch::Tensor pool_with_aten(const torch::Tensor& table, const torch::Tensor& ids, const torch::Tensor& weights,
                             int64_t batch, int64_t seq, int64_t padding_idx) {
  const auto kept = (ids != padding_idx).nonzero().squeeze(1);
  const auto shares = table.index_select(0, ids.index_select(0, kept)) * weights.index_select(0, kept).unsqueeze(1);
  return torch::zeros({batch, table.size(1)}, table.options())
      .index_add_(0, bag_of_each_token(ids, seq).index_select(0, kept), shares);
}

// add_into_table's sums with ATen's operations: each non-padding token's
// share `weights[t] * grad[bag]` added into the table's `.grad` (in token
// order on the CPU; on a GPU in the order index_add_'s atomics take).
void add_into_table_with_aten(torch::Tensor& table, const torch::Tensor& grad, const torch::Tensor& ids,
                              const torch::Tensor& weights, int64_t seq, int64_t padding_idx) {
  if (!table.grad().defined()) table.mutable_grad() = torch::zeros_like(table);
  const auto kept = (ids != padding_idx).nonzero().squeeze(1);
  const auto shares = grad.index_select(0, bag_of_each_token(ids, seq).index_select(0, kept)) *
                      weights.index_select(0, kept).unsqueeze(1);
  table.mutable_grad().index_add_(0, ids.index_select(0, kept), shares.to(table.grad().scalar_type()));
}

// weight_gradients' dot products with ATen's operations (0 for padding).
torch::Tensor weight_gradients_with_aten(const torch::Tensor& table, const torch::Tensor& grad,
                                         const torch::Tensor& ids, int64_t seq, int64_t padding_idx) {
  const auto dots = (grad.index_select(0, bag_of_each_token(ids, seq)) * table.index_select(0, ids)).sum(1);
  return dots.masked_fill(ids == padding_idx, 0);
}

class WeightedBagSum : public torch::autograd::Function<WeightedBagSum> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& table,
                               const torch::Tensor& ids, const torch::Tensor& token_weights, int64_t padding_idx) {
    const int64_t batch = ids.size(0), seq = ids.size(1);
    const auto flat = ids.reshape({-1}).contiguous();
    ctx->saved_data["table"] = table;  // the parameter itself: backward adds into its .grad
    ctx->saved_data["ids"] = flat;
    ctx->saved_data["weights"] = token_weights;
    ctx->saved_data["seq"] = seq;
    ctx->saved_data["padding_idx"] = padding_idx;
    if (seq == 0) return torch::zeros({batch, table.size(1)}, table.options());  // empty bags
    if (!own_kernels(table, {flat, token_weights})) {
      if (table.device().is_cpu()) return pool_with_aten(table, flat, token_weights, batch, seq, padding_idx);
      const auto offsets = torch::arange(0, batch * seq, std::max<int64_t>(seq, 1), ids.options());
      return std::get<0>(torch::embedding_bag(table, flat, offsets, /*scale_grad_by_freq=*/false, /*mode=sum*/ 0,
                                              /*sparse=*/false, token_weights, /*include_last_offset=*/false,
                                              padding_idx));
    }
    // The rows are read by address: an id outside the table is refused, as
    // LibTorch's embedding_bag refuses it.
    const int64_t rows = table.size(0), tokens = flat.numel();
    const int64_t* id = flat.data_ptr<int64_t>();
    for (int64_t t = 0; t < tokens; ++t) {
      TORCH_CHECK(id[t] >= 0 && id[t] < rows, "weighted_bag_sum: id ", id[t], " (token ", t, ") is not in [0, ", rows,
                  ")");
    }
    auto pooled = torch::empty({batch, table.size(1)}, table.options());
    const auto weights = token_weights.contiguous();
    AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "weighted_bag_sum_forward", [&] {
      pool(pooled.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), flat.data_ptr<int64_t>(),
           weights.data_ptr<scalar_t>(), batch, seq, table.size(1), padding_idx);
    });
    return pooled;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto table = ctx->saved_data["table"].toTensor();
    const auto ids = ctx->saved_data["ids"].toTensor();
    const auto weights = ctx->saved_data["weights"].toTensor().contiguous();
    const int64_t seq = ctx->saved_data["seq"].toInt(), padding_idx = ctx->saved_data["padding_idx"].toInt();
    const auto grad = grad_outputs[0].contiguous();
    const int64_t tokens = ids.numel(), dim = table.size(1);
    torch::Tensor weights_grad;
    const bool needs_weights_grad = ctx->needs_input_grad(2);
    if (!own_kernels(table, {ids, weights, grad})) {
      if (table.requires_grad()) add_into_table_with_aten(table, grad, ids, weights, seq, padding_idx);
      if (needs_weights_grad) weights_grad = weight_gradients_with_aten(table, grad, ids, seq, padding_idx);
      return {torch::Tensor(), torch::Tensor(), weights_grad, torch::Tensor()};
    }
    if (needs_weights_grad) weights_grad = torch::empty_like(weights);
    AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "weighted_bag_sum_backward", [&] {
      if (table.requires_grad()) {
        if (!table.grad().defined()) table.mutable_grad() = torch::zeros_like(table);
        auto& table_grad = table.mutable_grad();
        TORCH_CHECK(table_grad.is_contiguous() && !table_grad.is_sparse(),
                    "weighted_bag_sum: the table's .grad must be dense and contiguous");
        add_into_table(table_grad.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), ids.data_ptr<int64_t>(),
                       weights.data_ptr<scalar_t>(), tokens, seq, dim, padding_idx);
      }
      if (needs_weights_grad) {
        const auto rows = table.contiguous();
        weight_gradients(weights_grad.data_ptr<scalar_t>(), rows.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                         ids.data_ptr<int64_t>(), tokens, seq, dim, padding_idx);
      }
    });
    return {torch::Tensor(), torch::Tensor(), weights_grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor weighted_bag_sum(const torch::Tensor& table, const torch::Tensor& ids, const torch::Tensor& token_weights,
                               int64_t padding_idx) {
  TORCH_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kLong, "weighted_bag_sum: ids must be int64 [batch, seq]");
  TORCH_CHECK(token_weights.dim() == 1 && token_weights.numel() == ids.numel() &&
                  token_weights.scalar_type() == table.scalar_type(),
              "weighted_bag_sum: token_weights must be [batch * seq] of the table's dtype");
  return WeightedBagSum::apply(table, ids, token_weights, padding_idx);
}

}  // namespace contaccum::detail
