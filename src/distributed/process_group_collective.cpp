#include "process_group_collective.h"

#include "contaccum/core/error_text.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <cmath>

namespace contaccum::detail {

ProcessGroupCollective::ProcessGroupCollective(c10::intrusive_ptr<c10d::ProcessGroup> group, DistributedOptions options)
    : group_(std::move(group)), options_(std::move(options)), rank_(group_->getRank()), world_(group_->getSize()) {}

void ProcessGroupCollective::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
  try {
    work->wait();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", rank_, " of ", world_, ": ", what, " failed (a rank died, or none answered within ",
                "distributed.timeout = ", options_.timeout_seconds(), " s): ", error_text(e));
  }
}

torch::Tensor ProcessGroupCollective::all_gather(const torch::Tensor& tensor) {
  TORCH_CHECK(tensor.defined(), "Collective::all_gather: the tensor is undefined");
  TORCH_CHECK(tensor.dim() >= 1, "Collective::all_gather: the tensor needs a dimension to gather along, got a scalar");
  std::vector<torch::Tensor> input = {tensor.contiguous()};
  std::vector<std::vector<torch::Tensor>> output(1);
  for (int64_t r = 0; r < world_; ++r) output[0].push_back(torch::empty_like(input[0]));
  wait(group_->allgather(output, input), "all_gather");
  return torch::cat(output[0]);
}

void ProcessGroupCollective::all_reduce_bucket(std::vector<torch::Tensor>& tensors, size_t begin, size_t end) {
  if (end - begin == 1 && tensors[begin].is_contiguous()) {
    std::vector<torch::Tensor> one = {tensors[begin]};
    wait(group_->allreduce(one), "all_reduce_sum");
    return;
  }
  std::vector<torch::Tensor> flat_parts;
  for (size_t i = begin; i < end; ++i) flat_parts.push_back(tensors[i].reshape({-1}));
  std::vector<torch::Tensor> flat = {torch::cat(flat_parts)};
  wait(group_->allreduce(flat), "all_reduce_sum");
  int64_t offset = 0;
  for (size_t i = begin; i < end; ++i) {
    const int64_t n = tensors[i].numel();
    tensors[i].copy_(flat[0].slice(0, offset, offset + n).view_as(tensors[i]));
    offset += n;
  }
}

void ProcessGroupCollective::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  for (const auto& t : tensors) TORCH_CHECK(t.defined(), "Collective::all_reduce_sum: a tensor is undefined");
  // Buckets of consecutive tensors of one dtype and device, at most
  // bucket_bytes each (a larger tensor is a bucket of its own).
  size_t begin = 0;
  while (begin < tensors.size()) {
    size_t end = begin + 1;
    int64_t bytes = tensors[begin].numel() * static_cast<int64_t>(tensors[begin].element_size());
    while (end < tensors.size() && tensors[end].scalar_type() == tensors[begin].scalar_type() &&
           tensors[end].device() == tensors[begin].device()) {
      const int64_t more = tensors[end].numel() * static_cast<int64_t>(tensors[end].element_size());
      if (bytes + more > options_.bucket_bytes()) break;
      bytes += more;
      ++end;
    }
    all_reduce_bucket(tensors, begin, end);
    begin = end;
  }
}

void ProcessGroupCollective::broadcast(torch::Tensor& tensor, int64_t root) {
  TORCH_CHECK(root >= 0 && root < world_, "Collective::broadcast: root must be in [0, ", world_, "), got ", root);
  TORCH_CHECK(tensor.defined(), "Collective::broadcast: the tensor is undefined");
  std::vector<torch::Tensor> one = {tensor.is_contiguous() ? tensor : tensor.contiguous()};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  wait(group_->broadcast(one, options), "broadcast");
  if (!tensor.is_contiguous()) tensor.copy_(one[0]);
}

void ProcessGroupCollective::barrier() { wait(group_->barrier(), "barrier"); }

}  // namespace contaccum::detail
