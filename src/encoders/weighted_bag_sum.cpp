#include "weighted_bag_sum.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>

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

template <typename T>
void add_into_table(T* table_grad, const T* grad, const int64_t* ids, const T* weights, int64_t tokens, int64_t seq,
                    int64_t dim, int64_t padding_idx) {
  const int64_t grain = std::max<int64_t>(16, dim / std::max(1, at::get_num_threads()));
  at::parallel_for(0, dim, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = 0; t < tokens; ++t) {
      if (ids[t] == padding_idx) continue;
      const T w = weights[t];
      const T* from = grad + (t / seq) * dim;
      T* to = table_grad + ids[t] * dim;
      for (int64_t c = begin; c < end; ++c) to[c] = to[c] + w * from[c];
    }
  });
}

template <typename T>
void weight_gradients(T* out, const T* table, const T* grad, const int64_t* ids, int64_t tokens, int64_t seq,
                      int64_t dim, int64_t padding_idx) {
  at::parallel_for(0, tokens, 256, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      out[t] = ids[t] == padding_idx ? T(0) : fixed_order_dot(grad + (t / seq) * dim, table + ids[t] * dim, dim);
    }
  });
}

class WeightedBagSum : public torch::autograd::Function<WeightedBagSum> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& table,
                               const torch::Tensor& ids, const torch::Tensor& token_weights, int64_t padding_idx) {
    const int64_t batch = ids.size(0), seq = ids.size(1);
    const auto flat = ids.reshape({-1}).contiguous();
    const auto offsets = torch::arange(0, batch * seq, std::max<int64_t>(seq, 1), ids.options());
    ctx->saved_data["table"] = table;  // the parameter itself: backward adds into its .grad
    ctx->saved_data["ids"] = flat;
    ctx->saved_data["weights"] = token_weights;
    ctx->saved_data["seq"] = seq;
    ctx->saved_data["padding_idx"] = padding_idx;
    return std::get<0>(torch::embedding_bag(table, flat, offsets, /*scale_grad_by_freq=*/false, /*mode=sum*/ 0,
                                            /*sparse=*/false, token_weights, /*include_last_offset=*/false,
                                            padding_idx));
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
