// One similarity, owned by the model: the strategy's loss reads it from the
// model, a cosine loss over a model that scores by dot product is refused
// (before, it trained a cosine loss while evaluation, embeddings and indexes
// ranked that model by inner product), and the config's `similarity` sets the
// model's.
#include "test_util.h"

namespace contaccum {
namespace {

using ::testing::HasSubstr;

TEST(Similarity, ACosineLossOverADotModelIsRefused) {
  auto model = test::make_model(0.0);  // scores by dot product
  const auto cosine = StrategyOptions::grad_accum(8, 4).loss(InfoNCEOptions().similarity(Similarity::Cosine));
  EXPECT_THAT(test::error_of([&] { Strategy(model, cosine); }),
              HasSubstr("StrategyOptions::loss.similarity is cosine but the model scores by dot product"));
  EXPECT_NO_THROW(Strategy(test::make_model(0.0, false, 97, 16, /*normalize=*/true), cosine));
}

// The loss a strategy computes over a cosine model, whatever its own options
// say, is the cosine InfoNCE (float64 oracle from the model's raw towers).
TEST(Similarity, TheStrategysLossReadsTheModelsSimilarity) {
  torch::manual_seed(21);
  auto model = test::make_model(0.0, false, 97, 16, /*normalize=*/true);
  const auto batch = test::random_batch(8, 1);
  const auto options = StrategyOptions::full_batch(8).loss(InfoNCEOptions().temperature(0.1));  // dot, by default
  Strategy strategy(model, options);
  EXPECT_EQ(strategy.options().loss().similarity(), Similarity::Cosine);
  const auto stats = strategy.compute_gradients(batch);

  torch::NoGradGuard no_grad;
  auto unit = [](const torch::Tensor& x) { return x / x.norm(2, {-1}, true); };
  const auto q = unit(model->query_encoder()->forward(batch.queries));
  const auto p = unit(model->passage_encoder()->forward(batch.passages));
  const auto s = q.matmul(p.t()) / 0.1;  // [8, 16]: example i's positive is column 2i
  const auto targets = torch::arange(8, torch::kLong) * 2;
  const double want = (s.logsumexp(1) - s.gather(1, targets.unsqueeze(1)).squeeze(1)).mean().item<double>();
  EXPECT_NEAR(stats.loss, want, 1e-12 * std::abs(want));
}

TEST(Similarity, TheConfigsSimilarityIsTheModels) {
  const auto config = TrainConfig::parse("similarity: cosine\n");
  EXPECT_EQ(config.model.similarity(), Similarity::Cosine);
  EXPECT_EQ(config.strategy_options().loss().similarity(), Similarity::Cosine);
  TextTable corpus;
  for (int i = 0; i < 30; ++i) corpus.add("d" + std::to_string(i), "", "alpha beta gamma " + std::to_string(i));
  const auto trained = build_model(config, &corpus);
  EXPECT_EQ(trained.model->options().similarity(), Similarity::Cosine);
  EXPECT_EQ(build_model(TrainConfig::parse(""), &corpus).model->options().similarity(), Similarity::Dot);
}

}  // namespace
}  // namespace contaccum
