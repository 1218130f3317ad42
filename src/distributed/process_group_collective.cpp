#include "process_group_collective.h"

#include "contaccum/core/error_text.h"

#include "sparse_rows.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <cmath>
#include <utility>

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

// A c10d all-gather in flight: its buffers live until it is waited for.
class ProcessGroupCollective::Gathering final : public PendingGather {
 public:
  Gathering(const ProcessGroupCollective& owner, const torch::Tensor& tensor) : owner_(owner) {
    TORCH_CHECK(tensor.defined(), "Collective::all_gather: the tensor is undefined");
    TORCH_CHECK(tensor.dim() >= 1,
                "Collective::all_gather: the tensor needs a dimension to gather along, got a scalar");
    input_ = {tensor.contiguous()};
    output_.resize(1);
    for (int64_t r = 0; r < owner.world_; ++r) output_[0].push_back(torch::empty_like(input_[0]));
    work_ = owner.group_->allgather(output_, input_);
  }
  torch::Tensor wait() override {
    TORCH_CHECK(work_, "PendingGather::wait: waited twice");
    owner_.wait(std::exchange(work_, {}), "all_gather");
    return torch::cat(output_[0]);
  }

 private:
  const ProcessGroupCollective& owner_;
  std::vector<torch::Tensor> input_;
  std::vector<std::vector<torch::Tensor>> output_;
  c10::intrusive_ptr<c10d::Work> work_;
};

std::unique_ptr<PendingGather> ProcessGroupCollective::start_all_gather(const torch::Tensor& tensor) {
  return std::make_unique<Gathering>(*this, tensor);
}

torch::Tensor ProcessGroupCollective::all_gather(const torch::Tensor& tensor) {
  return start_all_gather(tensor)->wait();
}

void ProcessGroupCollective::all_reduce_one(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one = {tensor};
  traffic_.all_reduce_bytes += tensor.numel() * static_cast<int64_t>(tensor.element_size());
  ++traffic_.all_reduce_calls;
  wait(group_->allreduce(one), "all_reduce_sum");
}

void ProcessGroupCollective::all_reduce_bucket(std::vector<torch::Tensor>& tensors, size_t begin, size_t end) {
  if (end - begin == 1 && tensors[begin].is_contiguous()) {
    all_reduce_one(tensors[begin]);
    return;
  }
  std::vector<torch::Tensor> flat_parts;
  for (size_t i = begin; i < end; ++i) flat_parts.push_back(tensors[i].reshape({-1}));
  auto flat = torch::cat(flat_parts);
  all_reduce_one(flat);
  int64_t offset = 0;
  for (size_t i = begin; i < end; ++i) {
    const int64_t n = tensors[i].numel();
    tensors[i].copy_(flat.slice(0, offset, offset + n).view_as(tensors[i]));
    offset += n;
  }
}

void ProcessGroupCollective::all_reduce_buckets(std::vector<torch::Tensor>& tensors) {
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

void ProcessGroupCollective::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  for (const auto& t : tensors) TORCH_CHECK(t.defined(), "Collective::all_reduce_sum: a tensor is undefined");
  std::vector<size_t> candidates;
  int64_t rows = 0;
  if (options_.sparse_rows()) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!detail::sparse_rows_candidate(tensors[i])) continue;
      candidates.push_back(i);
      rows += tensors[i].size(0);
    }
  }
  if (candidates.empty()) {
    all_reduce_buckets(tensors);
    return;
  }
  // One flag per row of every candidate, summed over the ranks first: then
  // every rank knows the rows some rank has nonzero, the same on all.
  auto flags = torch::empty({rows}, torch::kFloat);
  int64_t offset = 0;
  for (const auto i : candidates) {
    detail::flag_nonzero_rows(tensors[i], flags.data_ptr<float>() + offset);
    offset += tensors[i].size(0);
  }
  all_reduce_one(flags);
  // Each candidate sends its rows some rank has nonzero, or itself whole
  // when more than half are.
  struct RowsSent {
    size_t tensor, position;
    torch::Tensor index;
  };
  std::vector<torch::Tensor> sent;
  std::vector<RowsSent> by_rows;
  size_t next = 0;
  offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (next == candidates.size() || candidates[next] != i) {
      sent.push_back(tensors[i]);
      continue;
    }
    ++next;
    const int64_t n = tensors[i].size(0);
    const auto index = flags.slice(0, offset, offset + n).nonzero().view({-1});
    offset += n;
    if (2 * index.size(0) > n) {
      sent.push_back(tensors[i]);
    } else if (index.size(0) > 0) {
      by_rows.push_back({i, sent.size(), index});
      sent.push_back(tensors[i].index_select(0, index));
    }
  }
  all_reduce_buckets(sent);
  // The rows sent come back summed; the others are +0.0 on every rank, their
  // own sum.
  for (const auto& r : by_rows) tensors[r.tensor].index_copy_(0, r.index, sent[r.position]);
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
