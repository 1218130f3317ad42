#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace contaccum {

/// Payload bytes this process has passed to collectives so far (what a
/// backend moves is a multiple of it: a ring all-reduce sends each rank
/// `2 (W-1)/W` times its bytes).
struct CollectiveTraffic {
  /// Bytes of the tensors summed by `all_reduce_sum`, as sent (with
  /// `DistributedOptions::sparse_rows`, the rows sent and the row flags).
  int64_t all_reduce_bytes = 0;
  /// Calls of the backend's all-reduce.
  int64_t all_reduce_calls = 0;
};

/// An all-gather in flight, from `Collective::start_all_gather`.
class PendingGather {
 public:
  virtual ~PendingGather() = default;
  /// Waits until every rank's tensor has arrived and returns what
  /// `Collective::all_gather` returns. Call it once.
  virtual torch::Tensor wait() = 0;
};

/// The collectives data-parallel training needs, behind one interface, so
/// the trainer and the engine are written once for any number of processes.
/// `LocalCollective` (one process, the default) implements it at no cost; a
/// backend over LibTorch's c10d implements it for several.
///
/// Every rank must make the same calls in the same order (as with any
/// collective library); each call returns once every rank has made it.
class Collective {
 public:
  virtual ~Collective() = default;
  /// This process's rank, in `[0, world_size())`.
  virtual int64_t rank() const = 0;
  /// Number of processes taking part.
  virtual int64_t world_size() const = 0;
  /// Every rank's `tensor` (same shape and dtype on all ranks) concatenated
  /// along dimension 0 in rank order. Not differentiable.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  /// Starts `all_gather(tensor)` and returns before the other ranks have
  /// joined where the backend can (c10d runs it on its own threads), so that
  /// a rank that arrives first computes on instead of waiting. `tensor` must
  /// stay unchanged until `wait` returns; every rank starts the same gathers
  /// in the same order, and collectives started later do not overtake it.
  /// The default runs `all_gather` at once.
  virtual std::unique_ptr<PendingGather> start_all_gather(const torch::Tensor& tensor);
  /// Replaces each tensor by its sum over the ranks, in place.
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  /// Replaces `tensor` by rank `root`'s, in place.
  virtual void broadcast(torch::Tensor& tensor, int64_t root = 0) = 0;
  /// Returns once every rank has called it.
  virtual void barrier() = 0;
  /// What this process has sent so far; zeros where nothing is counted (one
  /// process).
  virtual CollectiveTraffic traffic() const { return {}; }
};

/// One process: rank 0 of 1. `all_gather` returns its input (no copy),
/// `all_reduce_sum` and `broadcast` change nothing.
class LocalCollective final : public Collective {
 public:
  int64_t rank() const override { return 0; }
  int64_t world_size() const override { return 1; }
  torch::Tensor all_gather(const torch::Tensor& tensor) override;
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override;
  void broadcast(torch::Tensor& tensor, int64_t root = 0) override;
  void barrier() override {}
};

/// The sizes of `world` contiguous shares of `rows` rows, in rank order:
/// they differ by at most one and the first ranks get the extra rows. The one
/// rule every sharded loop uses (encoding a corpus or a loss group), so that
/// shares gathered in rank order are the rows in their own order.
std::vector<int64_t> contiguous_shares(int64_t rows, int64_t world);

/// Gathers rows when ranks hold different numbers of them: rank `r` passes
/// `counts[r]` rows (`tensor.size(0) == counts[rank]`; the other dimensions,
/// dtype and device equal on every rank) and gets every rank's rows back,
/// one tensor per rank. Every rank must pass the same `counts`. One
/// `all_gather` of the rows padded to `max(counts)`.
std::vector<torch::Tensor> all_gather_rows(Collective& collective, const torch::Tensor& tensor,
                                           const std::vector<int64_t>& counts);

/// `all_gather_rows` in flight (`start_all_gather_rows`).
class PendingRows {
 public:
  PendingRows() = default;
  PendingRows(std::unique_ptr<PendingGather> gather, std::vector<int64_t> counts, torch::Tensor local = {});
  /// Every rank's rows, one tensor per rank, as `all_gather_rows` returns
  /// them. Call it once.
  std::vector<torch::Tensor> wait();

 private:
  std::unique_ptr<PendingGather> gather_;
  std::vector<int64_t> counts_;
  torch::Tensor local_;  // at world size 1, the rows themselves
};

/// Starts `all_gather_rows` (`Collective::start_all_gather`).
PendingRows start_all_gather_rows(Collective& collective, const torch::Tensor& tensor,
                                  const std::vector<int64_t>& counts);

/// Replaces `text` by rank `root`'s (two broadcasts: the length, the bytes).
void broadcast_string(Collective& collective, std::string& text, int64_t root = 0);

/// The process-wide `LocalCollective`, the default wherever a collective is
/// taken.
std::shared_ptr<Collective> local_collective();

}  // namespace contaccum
