#include "contaccum/model/gradient_norms.h"

#include <cmath>
#include <limits>
#include <vector>

#include "contaccum/core/helper_thread.h"

namespace contaccum {
namespace {

// Sum of squares of a CPU float32 gradient in double, by a loop over the
// data: no double copy of every gradient each step (for a bag-of-embeddings
// tower that copy cost more than the loss). In chunks of a fixed length,
// each summed in four interleaved chains (independent chains pipeline
// better), the chunks' sums then added in order: the caller and the helper
// thread share the chunks (the embedding table's gradient is tens of MB) and
// the result does not depend on how many threads there are.
double cpu_float_squared_norm(const torch::Tensor& grad) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const auto c = grad.contiguous();
  const float* x = c.data_ptr<float>();
  const int64_t n = c.numel();
  std::vector<double> chunk_sums(static_cast<size_t>((n + kChunk - 1) / kChunk), 0.0);
  share_out_ranges(n, kChunk, [&](int64_t begin, int64_t end) {
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = begin;
    for (; i + 4 <= end; i += 4) {
      for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(x[i + k]) * static_cast<double>(x[i + k]);
    }
    for (; i < end; ++i) acc[0] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    chunk_sums[static_cast<size_t>(begin / kChunk)] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  });
  double sum = 0.0;
  for (const double s : chunk_sums) sum += s;
  return sum;
}

// Squared norms of the towers: host sums for CPU float32, device sums (read
// back once, at the end) for everything else.
class SquaredNorms {
 public:
  void add(int tower, const torch::Tensor& grad) {
    if (grad.device().is_cpu() && grad.scalar_type() == torch::kFloat) {
      host_[tower] += cpu_float_squared_norm(grad);
      return;
    }
    if (!device_.defined()) device_ = torch::zeros({2}, grad.options().dtype(torch::kDouble));
    device_[tower] += grad.to(torch::kDouble).pow(2).sum();
  }
  double get(int tower) {
    if (device_.defined() && !device_host_.defined()) device_host_ = device_.cpu();  // the one sync
    return host_[tower] + (device_host_.defined() ? device_host_.data_ptr<double>()[tower] : 0.0);
  }

 private:
  double host_[2] = {0.0, 0.0};
  torch::Tensor device_, device_host_;
};

}  // namespace

GradientNorms gradient_norms(const DualEncoder& model) {
  TORCH_CHECK(!model.is_empty(), "gradient_norms: the model is empty");
  SquaredNorms sums;
  const bool shared = model->shared();
  for (int tower = 0; tower < (shared ? 1 : 2); ++tower) {
    for (const auto& p : tower == 0 ? model->query_parameters() : model->passage_parameters()) {
      if (p.grad().defined()) sums.add(tower, p.grad().detach());
    }
  }
  GradientNorms out;
  out.query = std::sqrt(sums.get(0));
  out.passage = shared ? out.query : std::sqrt(sums.get(1));
  out.total = shared ? out.query : std::hypot(out.query, out.passage);
  out.ratio = shared ? 1.0 : out.passage > 0.0 ? out.query / out.passage : std::numeric_limits<double>::quiet_NaN();
  return out;
}

}  // namespace contaccum
