#include "contaccum/distributed/collective.h"

#include <c10/util/Exception.h>

namespace contaccum {

torch::Tensor LocalCollective::all_gather(const torch::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), "Collective::all_gather: the tensor is undefined");
  TORCH_CHECK(tensor.dim() >= 1, "Collective::all_gather: the tensor needs a dimension to gather along, got a scalar");
  return tensor;
}

void LocalCollective::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  for (const auto& t : tensors) TORCH_CHECK(t.defined(), "Collective::all_reduce_sum: a tensor is undefined");
}

void LocalCollective::broadcast(torch::Tensor& tensor, int64_t root) {
  TORCH_CHECK(root == 0, "Collective::broadcast: root must be in [0, 1), got ", root);
  TORCH_CHECK(tensor.defined(), "Collective::broadcast: the tensor is undefined");
}

std::shared_ptr<Collective> local_collective() {
  static const auto local = std::make_shared<LocalCollective>();
  return local;
}

}  // namespace contaccum
