#pragma once

#include <contaccum/contaccum.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace contaccum {
namespace test {

/// The message of the `c10::Error` that `fn` throws ("no error" when none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

/// The whole content of a file.
// Restores the process's compute threads (LibTorch's and OpenBLAS's, which
// the helper thread follows) when a test leaves, whatever happens in it.
struct ComputeThreadsGuard {
  int blas = blas_threads();
  int torch_threads = torch::get_num_threads();
  ~ComputeThreadsGuard() {
    if (blas > 0) set_compute_threads(blas);
    torch::set_num_threads(torch_threads);
  }
};

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Each banked query's log sum_j exp(s(q_r, p_j) / tau) over every vector of
/// the passage bank, in float64, row by row: the from-scratch oracle of
/// `BankScoreCache`, independent of the cache and of the loss.
inline torch::Tensor bank_logsumexp_oracle(const MemoryBank& queries, const MemoryBank& passages,
                                           const InfoNCEOptions& loss) {
  auto q = queries.view().select(1, 0).to(torch::kDouble);
  auto p = passages.view().reshape({-1, passages.dim()}).to(torch::kDouble);
  if (loss.similarity() == Similarity::Cosine) {
    q = q / q.norm(2, {1}, true);
    p = p / p.norm(2, {1}, true);
  }
  auto out = torch::empty({q.size(0)}, torch::kDouble);
  for (int64_t r = 0; r < q.size(0); ++r) {
    const auto s = p.matmul(q[r]) / loss.temperature();
    const double top = s.max().item<double>();
    out[r] = top + std::log((s - top).exp().sum().item<double>());
  }
  return out;
}

/// A fixture with a fresh temporary directory `dir_` per test, removed after.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "-" + info->name();
    for (char& c : name) c = c == '/' ? '_' : c;  // parameterised tests
    dir_ = std::filesystem::temp_directory_path() / ("contaccum-test-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  /// Writes `content` to `dir_/name` and returns the path.
  std::string write(const std::string& name, const std::string& content) {
    const auto path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  std::filesystem::path dir_;
};

/// A random batch of `n` examples with `h` hard negatives; variable-length
/// rows (padding id 0 with mask 0).
inline TrainingBatch random_batch(int64_t n, int64_t h, int64_t vocab = 97, int64_t q_len = 6, int64_t p_len = 11) {
  auto make = [&](int64_t rows, int64_t len) {
    EncoderInput in;
    in.input_ids = torch::randint(1, vocab, {rows, len}, torch::kLong);
    auto lengths = torch::randint(1, len + 1, {rows, 1}, torch::kLong);
    in.attention_mask = torch::arange(len).unsqueeze(0).lt(lengths).to(torch::kLong);
    in.input_ids = in.input_ids * in.attention_mask;
    return in;
  };
  TrainingBatch b;
  b.hard_negatives = h;
  b.queries = make(n, q_len);
  b.passages = make(n * (1 + h), p_len);
  return b;
}

/// `batch` with passage identities drawn from `pool` values (so that, with a
/// small pool, examples share positives and hard negatives, within a batch
/// and across batches and banks) and each query's positives: its positive's
/// identity and, for some, one more from the pool.
inline TrainingBatch with_colliding_ids(TrainingBatch batch, int64_t pool) {
  const int64_t n = batch.size(), g = batch.passages_per_example();
  batch.passage_ids = torch::randint(pool, {n * g}, torch::kLong);
  auto more = torch::randint(pool, {n, 1}, torch::kLong);
  more.masked_fill_(torch::rand({n, 1}).lt(0.5), -1);
  batch.positive_ids = torch::cat({batch.passage_ids.view({n, g}).narrow(1, 0, 1), more}, 1);
  return batch;
}

/// A two-tower (or shared) bag-of-embeddings dual encoder (float64 unless
/// told otherwise).
inline DualEncoder make_model(double dropout, bool shared = false, int64_t vocab = 97, int64_t dim = 16,
                              bool normalize = false, torch::Dtype dtype = torch::kDouble) {
  auto tower = [&] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(vocab, dim).embedding_dim(12).dropout(dropout)).ptr();
  };
  DualEncoder model = shared ? DualEncoder(tower(), DualEncoderOptions().normalize(normalize))
                             : DualEncoder(tower(), tower(), DualEncoderOptions().normalize(normalize));
  model->to(dtype);
  return model;
}

/// Gradients of every named parameter (cloned), by name.
// One plain SGD update of every parameter that has a gradient.
inline void sgd(const DualEncoder& model, double lr) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.grad().defined()) p.sub_(lr * p.grad());
  }
}

inline std::vector<std::pair<std::string, torch::Tensor>> grads_of(const DualEncoder& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : model->named_parameters()) {
    out.emplace_back(kv.key(), kv.value().grad().defined() ? kv.value().grad().clone() : torch::zeros_like(kv.value()));
  }
  return out;
}

/// Every parameter's gradient agrees within `rtol * scale + atol`, where
/// `scale` is the largest reference gradient entry of the model. (A global
/// scale because some gradients are analytically zero, e.g. a passage
/// projection bias under dot-product InfoNCE, and hold only rounding noise.)
inline void expect_same_grads(const std::vector<std::pair<std::string, torch::Tensor>>& got,
                              const std::vector<std::pair<std::string, torch::Tensor>>& want, double rtol,
                              double atol = 0.0) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0.0;
  for (const auto& kv : want) scale = std::max(scale, kv.second.abs().max().item<double>());
  EXPECT_GT(scale, 0.0) << "all reference gradients are zero";
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first, want[i].first);
    const double diff = (got[i].second - want[i].second).abs().max().item<double>();
    EXPECT_LE(diff, rtol * scale + atol) << "gradient of " << got[i].first << " differs by " << diff << " (scale "
                                         << scale << ")";
  }
}

/// What `save(archive)` writes, serialized to bytes and read back (a
/// checkpoint round trip without a file).
template <typename Saveable>
torch::serialize::InputArchive through_bytes(const Saveable& object) {
  torch::serialize::OutputArchive out;
  object.save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  return in;
}

/// Runs one strategy step on `model` from zero gradients; returns the stats.
inline StepStats step(Strategy& strategy, const TrainingBatch& batch) {
  for (auto& p : strategy.model()->parameters()) p.mutable_grad() = torch::Tensor();
  return strategy.compute_gradients(batch);
}

}  // namespace test
}  // namespace contaccum
