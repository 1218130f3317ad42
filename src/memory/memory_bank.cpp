#include "contaccum/memory/memory_bank.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <algorithm>

namespace contaccum {

MemoryBank::MemoryBank(MemoryBankOptions options) : options_(options) {
  TORCH_CHECK(options_.capacity() >= 0, "MemoryBankOptions::capacity must be >= 0, got ", options_.capacity());
}

void MemoryBank::enqueue(const torch::Tensor& reps_in) {
  TORCH_CHECK(reps_in.defined() && (reps_in.dim() == 2 || reps_in.dim() == 3),
              "MemoryBank::enqueue: reps must be [n, dim] or [n, group, dim], got ",
              reps_in.defined() ? reps_in.sizes() : torch::IntArrayRef{});
  if (capacity() == 0) return;
  torch::NoGradGuard no_grad;
  auto reps = reps_in.detach();
  if (reps.dim() == 2) reps = reps.unsqueeze(1);
  if (!storage_.defined()) {
    storage_ = torch::empty({capacity(), reps.size(1), reps.size(2)}, reps.options());
  }
  TORCH_CHECK(reps.size(1) == storage_.size(1) && reps.size(2) == storage_.size(2),
              "MemoryBank::enqueue: reps [n, group, dim] = ", reps.sizes(), " must match the bank's [", capacity(),
              ", ", storage_.size(1), ", ", storage_.size(2), "]");
  TORCH_CHECK(reps.scalar_type() == storage_.scalar_type() && reps.device() == storage_.device(),
              "MemoryBank::enqueue: reps (", reps.scalar_type(), ", ", reps.device(), ") must match the bank (",
              storage_.scalar_type(), ", ", storage_.device(), ")");
  int64_t n = reps.size(0);
  if (n > capacity()) {
    reps = reps.slice(0, n - capacity());
    n = capacity();
  }
  // At most two contiguous writes: up to the end of the storage, then wrap.
  const int64_t first = std::min(n, capacity() - head_);
  storage_.slice(0, head_, head_ + first).copy_(reps.slice(0, 0, first));
  if (first < n) storage_.slice(0, 0, n - first).copy_(reps.slice(0, first, n));
  head_ = (head_ + n) % capacity();
  size_ = std::min(capacity(), size_ + n);
}

torch::Tensor MemoryBank::view() const {
  if (!storage_.defined()) return {};
  return storage_.slice(0, 0, size_);
}

torch::Tensor MemoryBank::ordered() const {
  if (!storage_.defined()) return {};
  if (!full()) return storage_.slice(0, 0, size_).clone();
  return torch::cat({storage_.slice(0, head_), storage_.slice(0, 0, head_)}, 0);
}

void MemoryBank::clear() {
  size_ = 0;
  head_ = 0;
}

void MemoryBank::save(torch::serialize::OutputArchive& archive) const {
  archive.write("capacity", torch::tensor(capacity(), torch::kLong));
  auto contents = ordered();
  archive.write("size", torch::tensor(size_, torch::kLong));
  if (contents.defined()) archive.write("contents", contents.cpu());
}

void MemoryBank::load(torch::serialize::InputArchive& archive) {
  torch::Tensor cap, size;
  archive.read("capacity", cap);
  archive.read("size", size);
  TORCH_CHECK(cap.item<int64_t>() == capacity(), "MemoryBank::load: saved capacity ", cap.item<int64_t>(),
              " != this bank's capacity ", capacity());
  clear();
  torch::Tensor contents;
  if (archive.try_read("contents", contents)) {
    TORCH_CHECK(contents.dim() == 3 && contents.size(0) == size.item<int64_t>(), "MemoryBank::load: saved contents ",
                contents.sizes(), " do not hold ", size.item<int64_t>(), " rows");
    const auto device = storage_.defined() ? storage_.device() : torch::Device(torch::kCPU);
    if (storage_.defined() && (storage_.size(1) != contents.size(1) || storage_.size(2) != contents.size(2) ||
                               storage_.scalar_type() != contents.scalar_type())) {
      storage_ = torch::Tensor();
    }
    if (contents.size(0) > 0) enqueue(contents.to(device));
  }
}

}  // namespace contaccum
