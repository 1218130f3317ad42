#include "contaccum/distributed/collective.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>

namespace contaccum {

std::vector<int64_t> contiguous_shares(int64_t rows, int64_t world) {
  TORCH_CHECK(rows >= 0, "contiguous_shares: rows must be >= 0, got ", rows);
  TORCH_CHECK(world > 0, "contiguous_shares: world must be > 0, got ", world);
  std::vector<int64_t> counts;
  for (int64_t r = 0; r < world; ++r) counts.push_back(rows / world + (r < rows % world ? 1 : 0));
  return counts;
}

namespace {

// The gather that already happened: what the default `start_all_gather` returns.
class GatheredAlready final : public PendingGather {
 public:
  explicit GatheredAlready(torch::Tensor all) : all_(std::move(all)) {}
  torch::Tensor wait() override { return all_; }

 private:
  torch::Tensor all_;
};

}  // namespace

std::unique_ptr<PendingGather> Collective::start_all_gather(const torch::Tensor& tensor) {
  return std::make_unique<GatheredAlready>(all_gather(tensor));
}

PendingRows::PendingRows(std::unique_ptr<PendingGather> gather, std::vector<int64_t> counts, torch::Tensor local)
    : gather_(std::move(gather)), counts_(std::move(counts)), local_(std::move(local)) {}

std::vector<torch::Tensor> PendingRows::wait() {
  if (!gather_) {
    TORCH_CHECK(local_.defined(), "PendingRows::wait: nothing is being gathered (waited twice?)");
    return {std::exchange(local_, torch::Tensor())};
  }
  const auto all = std::exchange(gather_, nullptr)->wait();
  const int64_t most = *std::max_element(counts_.begin(), counts_.end());
  std::vector<torch::Tensor> out;
  out.reserve(counts_.size());
  for (size_t r = 0; r < counts_.size(); ++r) {
    const auto at = static_cast<int64_t>(r) * most;
    out.push_back(all.slice(0, at, at + counts_[r]));
  }
  return out;
}

PendingRows start_all_gather_rows(Collective& collective, const torch::Tensor& tensor,
                                  const std::vector<int64_t>& counts) {
  const int64_t world = collective.world_size(), rank = collective.rank();
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == world, "all_gather_rows: counts has ", counts.size(),
              " entries for ", world, " ranks");
  TORCH_CHECK(tensor.defined() && tensor.dim() >= 1, "all_gather_rows: the tensor needs a row dimension");
  TORCH_CHECK(tensor.size(0) == counts[rank], "all_gather_rows: rank ", rank, " holds ", tensor.size(0),
              " rows but counts says ", counts[rank]);
  if (world == 1) return PendingRows(nullptr, counts, tensor);
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  auto padded = tensor;
  if (tensor.size(0) < most) {
    auto shape = tensor.sizes().vec();
    shape[0] = most - tensor.size(0);
    padded = torch::cat({tensor, torch::zeros(shape, tensor.options())});
  }
  return PendingRows(collective.start_all_gather(padded.contiguous()), counts);
}

std::vector<torch::Tensor> all_gather_rows(Collective& collective, const torch::Tensor& tensor,
                                           const std::vector<int64_t>& counts) {
  return start_all_gather_rows(collective, tensor, counts).wait();
}

void broadcast_string(Collective& collective, std::string& text, int64_t root) {
  if (collective.world_size() == 1) return;
  auto length = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong);
  collective.broadcast(length, root);
  auto bytes = torch::zeros({length.item<int64_t>()}, torch::kUInt8);
  if (collective.rank() == root) std::copy(text.begin(), text.end(), bytes.data_ptr<uint8_t>());
  collective.broadcast(bytes, root);
  text.assign(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()));
}

}  // namespace contaccum
