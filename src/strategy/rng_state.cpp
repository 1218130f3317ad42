#include "contaccum/strategy/rng_state.h"

#include <ATen/Context.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <string>

#include <mutex>

namespace contaccum {
namespace {

torch::Tensor get_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_state(at::Generator gen, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Device generators are only reachable through the device-generic context
// API, which keeps this file free of CUDA headers (LibTorch may be CPU-only).
int64_t cuda_devices() { return at::hasCUDA() ? at::getNumGPUs() : 0; }

}  // namespace

RngState RngState::capture() {
  RngState s;
  s.cpu_ = get_state(at::globalContext().defaultGenerator(c10::Device(c10::kCPU)));
  for (int64_t i = 0; i < cuda_devices(); ++i) {
    s.cuda_.push_back(
        get_state(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)))));
  }
  return s;
}

void RngState::restore() const {
  TORCH_CHECK(cpu_.defined(), "RngState::restore: nothing captured");
  set_state(at::globalContext().defaultGenerator(c10::Device(c10::kCPU)), cpu_);
  for (size_t i = 0; i < cuda_.size(); ++i) {
    set_state(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i))),
              cuda_[i]);
  }
}

void RngState::save(torch::serialize::OutputArchive& archive) const {
  TORCH_CHECK(cpu_.defined(), "RngState::save: nothing captured");
  archive.write("cpu", cpu_);
  archive.write("cuda_devices", torch::tensor(static_cast<int64_t>(cuda_.size())));
  for (size_t i = 0; i < cuda_.size(); ++i) archive.write("cuda_" + std::to_string(i), cuda_[i]);
}

RngState RngState::load(torch::serialize::InputArchive& archive) {
  RngState s;
  torch::Tensor devices;
  archive.read("cpu", s.cpu_);
  archive.read("cuda_devices", devices);
  const int64_t n = devices.item<int64_t>();
  TORCH_CHECK(n == 0 || n == cuda_devices(), "RngState::load: the snapshot has ", n,
              " CUDA generators but this process sees ", cuda_devices(), " CUDA devices");
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor t;
    archive.read("cuda_" + std::to_string(i), t);
    s.cuda_.push_back(t);
  }
  return s;
}

torch::Tensor RngState::to_bytes() const {
  TORCH_CHECK(cpu_.defined(), "RngState::to_bytes: nothing captured");
  std::vector<torch::Tensor> parts = {cpu_.flatten()};
  for (const auto& c : cuda_) parts.push_back(c.flatten());
  return torch::cat(parts);
}

RngState RngState::from_bytes(const torch::Tensor& bytes) {
  const RngState like = capture();
  RngState s;
  int64_t at = 0, total = like.cpu_.numel();
  for (const auto& c : like.cuda_) total += c.numel();
  TORCH_CHECK(bytes.dim() == 1 && bytes.scalar_type() == torch::kUInt8 && bytes.numel() == total,
              "RngState::from_bytes: expected ", total, " bytes of generator state, got ", bytes.numel());
  auto take = [&](const torch::Tensor& shape_of) {
    auto t = bytes.slice(0, at, at + shape_of.numel()).clone().view(shape_of.sizes());
    at += shape_of.numel();
    return t;
  };
  s.cpu_ = take(like.cpu_);
  for (const auto& c : like.cuda_) s.cuda_.push_back(take(c));
  return s;
}

}  // namespace contaccum
