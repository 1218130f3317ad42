// The `device` setting: its spellings, what `auto` and `cuda` resolve to, the
// errors that name the value, the config key and the CLI flag; the engine's
// state following the model's device and dtype (checked through the dtype
// on the CPU, and on a GPU where one is visible).
#include "test_util.h"

#include <contaccum/core/device.h>
#include <torch/cuda.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

TEST(Device, SpellingsResolveAndBadOnesAreNamed) {
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  if (torch::cuda::is_available()) {
    EXPECT_EQ(resolve_device("auto"), torch::Device(torch::kCUDA, 0));
  } else {
    EXPECT_EQ(resolve_device("auto", 3), torch::Device(torch::kCPU));
    EXPECT_THAT(test::error_of([] { resolve_device("cuda"); }),
                HasSubstr("device cuda: this LibTorch has no CUDA or no GPU is visible"));
    EXPECT_THAT(test::error_of([] { resolve_device("cuda:1"); }),
                HasSubstr("device cuda:1: this LibTorch has no CUDA"));
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CPU", "cuda:-1", ""}) {
    EXPECT_THAT(test::error_of([bad] { resolve_device(bad); }),
                HasSubstr(std::string("device must be auto, cpu, cuda or cuda:N, got '") + bad + "'"));
  }
}

TEST(Device, TheConfigKeyIsCheckedAndMayChangeOnResume) {
  EXPECT_EQ(TrainConfig().device, "auto");
  EXPECT_EQ(TrainConfig::parse("device: cuda:1\n").device, "cuda:1");
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("device: gpu\n"); }),
              HasSubstr("config key 'device' must be auto, cpu, cuda or cuda:N, got gpu"));
  EXPECT_THAT(TrainConfig().to_yaml(/*docs=*/true), HasSubstr("device: \"auto\"  # where the model and banks live"));
}

TEST(Device, Fp16NeedsCuda) {
  EXPECT_THAT(test::error_of([] {
                Strategy(test::make_model(0.0, false, 97, 16, false, torch::kFloat),
                         StrategyOptions::grad_accum(8, 4).precision(Precision::Fp16));
              }),
              HasSubstr("precision fp16 has no autocast on the model's device (cpu)"));
}

// Every tensor the engine keeps (banks, score cache, momentum encoder,
// staleness sample's outputs) follows the model: float64 here, where a stray
// default-typed (float32) tensor would show.
TEST(Device, TheEnginesStateFollowsTheModelsType) {
  torch::manual_seed(2);
  auto model = test::make_model(0.1, false, 97, 16, /*normalize=*/true, torch::kDouble);
  Strategy strategy(model, StrategyOptions::contaccum(8, 4, 16)
                               .bank_encoder(BankEncoder::Momentum)
                               .momentum(0.9)
                               .staleness_sample(4)
                               .loss(InfoNCEOptions().similarity(Similarity::Cosine)));
  for (int s = 0; s < 5; ++s) test::step(strategy, test::random_batch(8, 1));
  EXPECT_EQ(strategy.query_bank().view().scalar_type(), torch::kDouble);
  EXPECT_EQ(strategy.passage_bank().view().scalar_type(), torch::kDouble);
  EXPECT_EQ(strategy.bank_scores().row_logsumexp().scalar_type(), torch::kDouble);
  for (const auto& p : model->parameters()) EXPECT_EQ(p.grad().scalar_type(), torch::kDouble);
  EXPECT_NO_THROW(strategy.measure_staleness());
}

// On a GPU: a bf16 and an fp16 ContAccum-over-GradCache step with the model,
// banks and score cache on it, near the CPU's fp32 step.
TEST(Device, CudaStepsInBf16AndFp16NearTheCpus) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  torch::manual_seed(6);
  const auto batch = test::random_batch(16, 1);
  auto loss_on = [&](torch::Device device, Precision precision) {
    torch::manual_seed(8);
    auto model = test::make_model(0.0, false, 97, 16, false, torch::kFloat);
    model->to(device);
    Strategy strategy(model, StrategyOptions::contaccum_grad_cache(16, 4, 32).precision(precision));
    const auto stats = test::step(strategy, batch);
    EXPECT_EQ(strategy.passage_bank().view().device(), device);
    EXPECT_EQ(strategy.bank_scores().row_logsumexp().device(), device);
    return stats.loss;
  };
  const double cpu = loss_on(torch::kCPU, Precision::Fp32);
  for (const auto precision : {Precision::Fp32, Precision::Bf16, Precision::Fp16}) {
    EXPECT_NEAR(loss_on(torch::Device(torch::kCUDA, 0), precision), cpu, 2e-2 * std::abs(cpu)) << enum_name(precision);
  }
}

// On a GPU, FusedAdamW takes torch::optim::AdamW's in-place kernels: the same
// weights after a few steps, weight decay groups included.
TEST(Device, FusedAdamWOnCudaIsTorchsAdamW) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  auto weights_after = [](bool fused) {
    torch::manual_seed(9);
    auto model = test::make_model(0.0, false, 97, 16, false, torch::kFloat);
    model->to(torch::Device(torch::kCUDA, 0));
    auto optimizer = make_adamw(*model, AdamWSetup().lr(1e-2).weight_decay(0.1).fused(fused));
    Strategy strategy(model, StrategyOptions::grad_accum(8, 4));
    torch::manual_seed(10);
    for (int s = 0; s < 3; ++s) {
      zero_gradients(*optimizer);
      strategy.compute_gradients(test::random_batch(8, 1));
      optimizer->step();
    }
    std::vector<torch::Tensor> out;
    for (const auto& p : model->parameters()) out.push_back(p.detach().cpu());
    return out;
  };
  const auto fused = weights_after(true), reference = weights_after(false);
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_TRUE(torch::allclose(fused[i], reference[i], 1e-6, 1e-7)) << i;
}

// On a GPU, the bag-of-embeddings tower trains off its CPU kernels
// (embedding_bag forward, ATen backward): its gradients, the attention
// pooling's included, near the CPU's.
TEST(Device, BagOfEmbeddingsGradientsOnCudaNearTheCpus) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  auto batch = test::random_batch(6, 0, 50).queries;
  batch.input_ids[1][0] = 0;  // a padding id the mask attends to: left out all the same
  batch.attention_mask[1][0] = 1;
  const auto upstream = torch::randn({6, 8});
  auto gradients_on = [&](torch::Device device) {
    torch::manual_seed(12);
    BagOfEmbeddingsEncoder enc(
        BagOfEmbeddingsEncoderOptions(50, 8).embedding_dim(8).dropout(0.0).pooling(BagPooling::Attention));
    enc->to(device);
    const EncoderInput in{batch.input_ids.to(device), batch.attention_mask.to(device), {}};
    (enc->forward(in) * upstream.to(device)).sum().backward();
    std::vector<torch::Tensor> out;
    for (const auto& p : enc->parameters()) out.push_back(p.grad().cpu());
    return out;
  };
  const auto cpu = gradients_on(torch::kCPU), cuda = gradients_on(torch::Device(torch::kCUDA, 0));
  ASSERT_EQ(cpu.size(), cuda.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_TRUE(torch::allclose(cuda[i], cpu[i], 1e-5, 1e-5)) << i;
}

// On a GPU: rankings that live there are read through a CPU copy by the
// metrics, the fusion and the TREC writer (they read rows by address).
class DeviceFiles : public test::TempDirTest {};

TEST_F(DeviceFiles, RankingsOnCudaAreEvaluatedAsOnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible";
  const SearchResult cpu{torch::tensor({{3.0f, 2.0f, 1.0f}, {0.5f, 0.25f, 0.125f}}),
                         torch::tensor({{2, 0, 1}, {1, 3, 2}}, torch::kLong)};
  const SearchResult cuda{cpu.scores.cuda(), cpu.indices.cuda()};
  const std::vector<Qrel> qrels = {{0, 0, 1}, {1, 2, 1}};
  EXPECT_EQ(compute_metrics(cuda, {0, 1}, qrels).to_json(), compute_metrics(cpu, {0, 1}, qrels).to_json());
  const auto fused_cpu = fuse_rankings(cpu, cpu), fused_cuda = fuse_rankings(cuda, cuda);
  EXPECT_TRUE(torch::equal(fused_cuda.indices.cpu(), fused_cpu.indices));
  TextTable queries, corpus;
  for (int i = 0; i < 2; ++i) queries.add("q" + std::to_string(i), "", "query");
  for (int i = 0; i < 4; ++i) corpus.add("d" + std::to_string(i), "", "passage");
  write_trec_run((dir_ / "cpu.trec").string(), cpu, {0, 1}, queries, corpus, "run");
  write_trec_run((dir_ / "cuda.trec").string(), cuda, {0, 1}, queries, corpus, "run");
  EXPECT_EQ(test::slurp(dir_ / "cuda.trec"), test::slurp(dir_ / "cpu.trec"));
}

}  // namespace
}  // namespace contaccum
