// A multi-step ContAccum run checked against a second implementation in
// Python (tests/python/contaccum_reference.py, run with Debian's
// python3-torch): same initial weights and batches via files this test
// writes, losses and final weights compared.
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json write_tensor(const fs::path& dir, const std::string& name, const torch::Tensor& t) {
  auto c = t.contiguous().cpu();
  const bool is_float = c.scalar_type() == torch::kDouble;
  EXPECT_TRUE(is_float || c.scalar_type() == torch::kLong) << name;
  std::ofstream out(dir / (name + ".bin"), std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  return json{{"file", name + ".bin"}, {"dtype", is_float ? "float64" : "int64"}, {"shape", c.sizes().vec()}};
}

struct PyCase {
  const char* name;
  int64_t total, micro, memory;
  bool cosine;
  double temperature;
  bool mask = true;
  friend void PrintTo(const PyCase& c, std::ostream* os) { *os << c.name; }
};

class PythonReference : public ::testing::TestWithParam<PyCase> {};

TEST_P(PythonReference, ContAccumLossesAndWeightsMatch) {
  const auto c = GetParam();
  if (std::system(CONTACCUM_TEST_PYTHON " -c 'import torch, numpy' 2>/dev/null") != 0) {
    GTEST_FAIL() << CONTACCUM_TEST_PYTHON << " cannot import torch and numpy: run scripts/install-deps.sh";
  }
  const fs::path dir =
      fs::temp_directory_path() / ("contaccum-pyref-" + std::string(c.name) + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  const int64_t steps = 5, h = 1;
  const double lr = 0.3;
  torch::manual_seed(1234 + c.total + c.memory);
  auto model = test::make_model(0.0, false, 97, 16, c.cosine);  // the model owns the similarity
  json manifest;
  manifest["config"] = {{"total_batch", c.total},
                        {"micro_batch", c.micro},
                        {"memory_size", c.memory},
                        {"hard_negatives", h},
                        {"temperature", c.temperature},
                        {"cosine", c.cosine},
                        {"lr", lr},
                        {"mask_false_negatives", c.mask}};
  for (const auto& kv : model->named_parameters()) {
    manifest["parameters"][kv.key()] = write_tensor(dir, kv.key(), kv.value().detach());
  }
  std::vector<TrainingBatch> batches;
  for (int64_t s = 0; s < steps; ++s) {
    batches.push_back(test::random_batch(c.total, h));
    auto& b = batches.back();
    // False negatives of every kind, by identical token rows (the identity
    // of a batch without ids): example 1's hard negative is example 0's
    // positive, and from the second step on example 2's positive and example
    // 3's hard negative repeat the previous step's example 4's positive (in
    // the banks by then).
    auto copy_row = [](EncoderInput& to, int64_t row, const EncoderInput& from, int64_t source) {
      to.input_ids[row].copy_(from.input_ids[source]);
      to.attention_mask[row].copy_(from.attention_mask[source]);
    };
    copy_row(b.passages, 1 * (1 + h) + 1, b.passages, 0);
    if (s > 0) {
      copy_row(b.passages, 2 * (1 + h), batches[s - 1].passages, 4 * (1 + h));
      copy_row(b.passages, 3 * (1 + h) + 1, batches[s - 1].passages, 4 * (1 + h));
    }
    const auto tag = "step" + std::to_string(s);
    manifest["batches"].push_back({{"q_ids", write_tensor(dir, tag + "_q_ids", b.queries.input_ids)},
                                   {"q_mask", write_tensor(dir, tag + "_q_mask", b.queries.attention_mask)},
                                   {"p_ids", write_tensor(dir, tag + "_p_ids", b.passages.input_ids)},
                                   {"p_mask", write_tensor(dir, tag + "_p_mask", b.passages.attention_mask)}});
  }
  std::ofstream(dir / "manifest.json") << manifest.dump();

  const std::string command =
      std::string(CONTACCUM_TEST_PYTHON) + " " + CONTACCUM_TEST_DIR + "/python/contaccum_reference.py " + dir.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  json result;
  std::ifstream(dir / "result.json") >> result;

  const auto options =
      StrategyOptions::contaccum(c.total, c.micro, c.memory)
          .loss(
              InfoNCEOptions().similarity(c.cosine ? Similarity::Cosine : Similarity::Dot).temperature(c.temperature));
  Strategy strategy(model, StrategyOptions(options).mask_false_negatives(c.mask));
  torch::optim::SGD optimizer(model->parameters(), lr);
  MaskedColumns masked;
  ASSERT_EQ(result["losses"].size(), static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) {
    optimizer.zero_grad();
    const auto stats = strategy.compute_gradients(batches[s]);
    masked += stats.masked;
    optimizer.step();
    const double want = result["losses"][s].get<double>();
    EXPECT_NEAR(stats.loss, want, 1e-10 * std::abs(want)) << "step " << s;
  }
  if (c.mask) {
    EXPECT_GT(masked.hard_negative, 0);
    EXPECT_GT(masked.bank, 0);
    EXPECT_GT(masked.banked_query, 0);
  }
  for (const auto& kv : model->named_parameters()) {
    const auto want = torch::tensor(result["parameters"][kv.key()].get<std::vector<double>>(), torch::kDouble);
    const double diff = (kv.value().detach().flatten() - want).abs().max().item<double>();
    EXPECT_LE(diff, 1e-10) << kv.key();
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Configurations, PythonReference,
                         ::testing::Values(PyCase{"DotWrapsWithinStep", 8, 2, 6, false, 1.0},
                                           PyCase{"CosineSpansSteps", 12, 4, 20, true, 0.1},
                                           PyCase{"CosineSpansStepsUnmasked", 12, 4, 20, true, 0.1, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contaccum
