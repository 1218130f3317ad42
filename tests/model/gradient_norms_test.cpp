// gradient_norms against a float64 sum written here, on random gradients of
// float32 and float64 towers.
#include "test_util.h"

#include <contaccum/model/gradient_norms.h>

#include <cmath>

namespace contaccum {
namespace {

DualEncoder towers(torch::Dtype dtype, bool shared) {
  auto tower = [dtype] {
    auto t = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(50, 6).embedding_dim(5)).ptr();
    t->to(dtype);
    return t;
  };
  return shared ? DualEncoder(tower()) : DualEncoder(tower(), tower());
}

double oracle(const std::vector<torch::Tensor>& params) {
  double s = 0.0;
  for (const auto& p : params) {
    const auto g = p.grad().to(torch::kDouble).contiguous();
    for (int64_t i = 0; i < g.numel(); ++i) s += g.data_ptr<double>()[i] * g.data_ptr<double>()[i];
  }
  return std::sqrt(s);
}

void random_gradients(DualEncoder& model, double scale) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p) * scale;
}

TEST(GradientNorms, MatchAFloat64SumPerTower) {
  torch::manual_seed(3);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto model = towers(dtype, false);
    random_gradients(model, 3.0);
    const auto n = gradient_norms(model);
    const double q = oracle(model->query_parameters()), p = oracle(model->passage_parameters());
    EXPECT_NEAR(n.query, q, 1e-12 * q) << dtype;
    EXPECT_NEAR(n.passage, p, 1e-12 * p) << dtype;
    EXPECT_NEAR(n.total, std::hypot(q, p), 1e-12 * (q + p)) << dtype;
    EXPECT_NEAR(n.ratio, q / p, 1e-12) << dtype;
    EXPECT_NE(n.query, n.passage);
  }
}

// A float32 gradient of several of the sum's chunks (65,536 elements) and a
// tail, summed by the caller and the helper thread: within float64 rounding
// of the oracle, and the same bits on one thread and two.
TEST(GradientNorms, LargeFloat32GradientsTheSameOnOneThreadAndTwo) {
  if (blas_threads() < 0 || max_parallelism() < 2) GTEST_SKIP() << "the helper's threads follow OpenBLAS's";
  const test::ComputeThreadsGuard restore;
  torch::manual_seed(5);
  auto tower = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(40001, 6).embedding_dim(7)).ptr();
  DualEncoder model(tower);
  random_gradients(model, 2.0);
  set_compute_threads(1);
  const auto one = gradient_norms(model);
  set_compute_threads(2);
  const auto two = gradient_norms(model);
  EXPECT_EQ(one.query, two.query);
  const double want = oracle(model->parameters());
  EXPECT_NEAR(one.query, want, 1e-12 * want);
}

TEST(GradientNorms, SharedTowerMissingGradientsAndNonFinite) {
  torch::manual_seed(4);
  auto shared = towers(torch::kFloat, true);
  random_gradients(shared, 1.0);
  const auto s = gradient_norms(shared);
  EXPECT_EQ(s.ratio, 1.0);
  EXPECT_EQ(s.total, s.query);
  EXPECT_EQ(s.passage, s.query);
  EXPECT_NEAR(s.query, oracle(shared->parameters()), 1e-12 * s.query);

  auto model = towers(torch::kFloat, false);
  for (auto& p : model->query_parameters()) p.mutable_grad() = torch::ones_like(p);
  const auto none = gradient_norms(model);  // the passage tower has no .grad
  EXPECT_EQ(none.passage, 0.0);
  EXPECT_TRUE(std::isnan(none.ratio));
  int64_t count = 0;
  for (const auto& p : model->query_parameters()) count += p.numel();
  EXPECT_DOUBLE_EQ(none.query, std::sqrt(static_cast<double>(count)));

  model->passage_parameters().front().mutable_grad() = torch::full_like(model->passage_parameters().front(), INFINITY);
  EXPECT_TRUE(std::isinf(gradient_norms(model).passage));
  // float32 gradients whose squares overflow float32 still have a finite norm.
  for (auto& p : model->query_parameters()) p.mutable_grad() = torch::full_like(p, 1e30f);
  const double big = static_cast<double>(1e30f) * std::sqrt(static_cast<double>(count));
  EXPECT_NEAR(gradient_norms(model).query, big, 1e-12 * big);
}

}  // namespace
}  // namespace contaccum
