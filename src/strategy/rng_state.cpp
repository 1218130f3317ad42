#include "contaccum/strategy/rng_state.h"

#include <ATen/Context.h>

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

}  // namespace contaccum
