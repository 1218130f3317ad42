#include "contaccum/core/device.h"

#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <cctype>

namespace contaccum {
namespace {

// The N of "cuda:N" (-1 for plain "cuda"); nothing for other text.
bool parse_cuda(const std::string& spec, int64_t& index) {
  if (spec == "cuda") {
    index = -1;
    return true;
  }
  const std::string prefix = "cuda:";
  if (spec.size() <= prefix.size() || spec.compare(0, prefix.size(), prefix) != 0) return false;
  const auto digits = spec.substr(prefix.size());
  if (digits.size() > 4) return false;
  for (const char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  index = std::stoll(digits);
  return true;
}

bool well_formed(const std::string& spec) {
  int64_t index = 0;
  return spec == "auto" || spec == "cpu" || parse_cuda(spec, index);
}

}  // namespace

torch::Device resolve_device(const std::string& spec, int64_t local_rank) {
  TORCH_CHECK(well_formed(spec), "device must be auto, cpu, cuda or cuda:N, got '", spec, "'");
  TORCH_CHECK(local_rank >= 0, "resolve_device: local_rank must be >= 0, got ", local_rank);
  if (spec == "cpu") return torch::kCPU;
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto" && !cuda) return torch::kCPU;
  TORCH_CHECK(cuda, "device ", spec,
              ": this LibTorch has no CUDA or no GPU is visible (use device: cpu, or auto to take a GPU when there is "
              "one)");
  int64_t index = -1;
  if (spec != "auto") parse_cuda(spec, index);
  if (index < 0) index = local_rank;
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  TORCH_CHECK(index < count, "device ", spec, ": GPU ", index, " does not exist (", count, " visible",
              spec == "auto" || spec == "cuda" ? "; local rank " + std::to_string(local_rank) : std::string(), ")");
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(index)};
}

OptionRule device_spec() {
  return [](const OptionValue& value) -> std::string {
    const auto* text = std::get_if<std::string>(&value);
    return text && well_formed(*text) ? "" : "must be auto, cpu, cuda or cuda:N";
  };
}

}  // namespace contaccum
