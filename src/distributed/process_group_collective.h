#pragma once
// Internal: `Collective` over a c10d process group (Gloo or NCCL). Not
// installed: c10d's headers need Gloo's, which the public API does not.

#include "contaccum/distributed/collective.h"
#include "contaccum/distributed/process_group.h"

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace contaccum::detail {

class ProcessGroupCollective final : public Collective {
 public:
  ProcessGroupCollective(c10::intrusive_ptr<c10d::ProcessGroup> group, DistributedOptions options);
  int64_t rank() const override { return rank_; }
  int64_t world_size() const override { return world_; }
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  std::unique_ptr<PendingGather> start_all_gather(const torch::Tensor& tensor) override;
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override;
  void broadcast(torch::Tensor& tensor, int64_t root = 0) override;
  void barrier() override;
  CollectiveTraffic traffic() const override { return traffic_; }

 private:
  // Waits for `work`; a failure (a peer gone, the timeout passed) becomes an
  // error naming this rank and the operation.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const;
  class Gathering;
  // One backend all-reduce of a contiguous tensor, counted in `traffic_`.
  void all_reduce_one(torch::Tensor& tensor);
  // Whole tensors, in flat buckets of at most `bucket_bytes`.
  void all_reduce_buckets(std::vector<torch::Tensor>& tensors);
  void all_reduce_bucket(std::vector<torch::Tensor>& tensors, size_t begin, size_t end);

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  DistributedOptions options_;
  int64_t rank_, world_;
  CollectiveTraffic traffic_;
};

}  // namespace contaccum::detail
