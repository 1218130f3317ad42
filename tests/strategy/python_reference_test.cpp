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
                        {"lr", lr}};
  for (const auto& kv : model->named_parameters()) {
    manifest["parameters"][kv.key()] = write_tensor(dir, kv.key(), kv.value().detach());
  }
  std::vector<TrainingBatch> batches;
  for (int64_t s = 0; s < steps; ++s) {
    batches.push_back(test::random_batch(c.total, h));
    const auto& b = batches.back();
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
  Strategy strategy(model, options);
  torch::optim::SGD optimizer(model->parameters(), lr);
  ASSERT_EQ(result["losses"].size(), static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) {
    optimizer.zero_grad();
    const auto stats = strategy.compute_gradients(batches[s]);
    optimizer.step();
    const double want = result["losses"][s].get<double>();
    EXPECT_NEAR(stats.loss, want, 1e-10 * std::abs(want)) << "step " << s;
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
                                           PyCase{"CosineSpansSteps", 12, 4, 20, true, 0.1}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contaccum
