#pragma once

#include <torch/optim/adamw.h>

#include <unordered_set>

namespace contaccum {

/// `torch::optim::AdamW` whose step updates each parameter, its gradient's
/// two moments and its weight decay in one pass over memory, with no
/// temporary tensor: the same options, parameter groups, state and
/// checkpoint format (`save`/`load` are AdamW's, so either class reads the
/// other's archives), and the same numbers bit for bit, on float32 and
/// float64 parameters, over any number of steps. `torch::optim::AdamW`
/// makes nine passes and allocates two parameter-sized temporaries per
/// parameter and step (its `sqrt` and division), which on a machine where
/// fresh memory costs page faults is most of its time.
///
/// Row-sparse (lazy) updates, per parameter (`set_row_sparse`): a 2-d
/// parameter such as an embedding table is updated only in the rows whose
/// gradient holds a non-zero this step. Those rows get exactly the dense
/// update; every other row keeps its value and both moments (no weight
/// decay, no moment decay), while the step count, and with it the bias
/// corrections, advances for the whole parameter. This is lazy Adam (as in
/// TensorFlow Addons' LazyAdam): it differs from dense AdamW only for rows
/// without gradient, which dense AdamW still moves by the decaying momentum
/// and shrinks by the weight decay. The row scan reads the gradient once.
///
/// `amsgrad` is not supported (refused at `step`); sparse gradients are
/// refused as by AdamW.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  torch::Tensor step(LossClosure closure = nullptr) override;

  /// Makes the updates of `param` (one of this optimizer's parameters,
  /// 2-d) row-sparse, or dense again with `row_sparse = false`.
  void set_row_sparse(const torch::Tensor& param, bool row_sparse = true);
  bool is_row_sparse(const torch::Tensor& param) const;

 private:
  torch::optim::AdamWParamState& state_of(const torch::Tensor& param);

  std::unordered_set<const c10::TensorImpl*> row_sparse_;
};

}  // namespace contaccum
