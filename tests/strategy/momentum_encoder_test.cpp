// The momentum bank encoder: momentum 0 is ContAccum bit for bit (dropout
// masks replayed), and with momentum m the average and the banked rows are
// those of a hand-kept moving average.
#include "test_util.h"

#include <contaccum/strategy/strategy.h>

namespace contaccum {
namespace {

using test::make_model;
using test::random_batch;
using test::sgd;

struct Trace {
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> grads;
  std::vector<torch::Tensor> query_banks, passage_banks;
  std::vector<torch::Tensor> params;
};

Trace train(const StrategyOptions& options, const std::vector<TrainingBatch>& batches, double dropout) {
  torch::manual_seed(31);
  auto model = make_model(dropout);
  Strategy strategy(model, options);
  torch::manual_seed(32);
  Trace t;
  for (const auto& b : batches) {
    test::step(strategy, b);
    t.grads.push_back(test::grads_of(model));
    t.query_banks.push_back(strategy.query_bank().view().clone());
    t.passage_banks.push_back(strategy.passage_bank().view().clone());
    sgd(model, 0.2);
    strategy.update_bank_encoder();
  }
  for (const auto& p : model->parameters()) t.params.push_back(p.detach().clone());
  return t;
}

class MomentumZero : public ::testing::TestWithParam<bool> {};

TEST_P(MomentumZero, IsContAccumBitForBitWithDropoutActive) {
  const bool over_grad_cache = GetParam();
  torch::manual_seed(30);
  std::vector<TrainingBatch> batches;
  for (int s = 0; s < 5; ++s) batches.push_back(random_batch(8, 1));
  // Banks of 12 with 8 rows a step: wrapped from step 2 on.
  const auto base =
      over_grad_cache ? StrategyOptions::contaccum_grad_cache(8, 2, 12) : StrategyOptions::contaccum(8, 2, 12);
  const auto want = train(base, batches, 0.3);
  const auto got = train(StrategyOptions(base).bank_encoder(BankEncoder::Momentum).momentum(0.0), batches, 0.3);
  for (size_t s = 0; s < batches.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    EXPECT_TRUE(torch::equal(got.query_banks[s], want.query_banks[s]));
    EXPECT_TRUE(torch::equal(got.passage_banks[s], want.passage_banks[s]));
    for (size_t i = 0; i < want.grads[s].size(); ++i) {
      EXPECT_TRUE(torch::equal(got.grads[s][i].second, want.grads[s][i].second)) << want.grads[s][i].first;
    }
  }
  for (size_t i = 0; i < want.params.size(); ++i) EXPECT_TRUE(torch::equal(got.params[i], want.params[i]));
  // The momentum path really ran: another momentum gives other banks.
  const auto other = train(StrategyOptions(base).bank_encoder(BankEncoder::Momentum).momentum(0.9), batches, 0.3);
  EXPECT_FALSE(torch::equal(other.passage_banks.back(), want.passage_banks.back()));
}

INSTANTIATE_TEST_SUITE_P(Strategies, MomentumZero, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ContAccumOverGradCache" : "ContAccum"; });

TEST(MomentumEncoder, AverageAndBankedRowsFollowAHandKeptAverage) {
  torch::manual_seed(33);
  auto model = make_model(0.0);
  const double m = 0.75;
  // Banks of 24 hold 3 steps of 8.
  Strategy strategy(model, StrategyOptions::contaccum(8, 4, 24).bank_encoder(BankEncoder::Momentum).momentum(m));
  std::vector<torch::Tensor> average;  // by hand
  for (const auto& p : model->parameters()) average.push_back(p.detach().clone());
  torch::manual_seed(34);
  for (int s = 0; s < 4; ++s) {
    const auto batch = random_batch(8, 1);
    test::step(strategy, batch);
    // This step's rows are the batch encoded with the average as it was
    // during the step (before this step's update).
    auto reference = make_model(0.0);
    {
      torch::NoGradGuard no_grad;
      const auto params = reference->parameters();
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(average[i]);
    }
    const auto q = reference->encode_queries(batch.queries).detach();
    const auto p = reference->encode_passages(batch.passages).detach().view({8, 2, -1});
    const int64_t head = strategy.passage_bank().head();
    const auto slots = torch::arange(head - 8, head).remainder(24);
    EXPECT_TRUE(torch::allclose(strategy.query_bank().view().index_select(0, slots).select(1, 0), q, 0, 1e-12))
        << "step " << s + 1;
    EXPECT_TRUE(torch::allclose(strategy.passage_bank().view().index_select(0, slots), p, 0, 1e-12))
        << "step " << s + 1;

    sgd(model, 0.5);
    strategy.update_bank_encoder();
    const auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) average[i] = m * average[i] + (1 - m) * params[i].detach();
    const auto& weights = strategy.momentum_encoder()->weights();
    ASSERT_EQ(weights.size(), average.size());
    for (size_t i = 0; i < weights.size(); ++i) {
      EXPECT_TRUE(torch::allclose(weights[i], average[i], 0, 1e-14)) << "step " << s + 1 << ", tensor " << i;
    }
  }
  // The model's own weights came back after every swap.
  EXPECT_FALSE(torch::allclose(model->parameters()[0], average[0]));
}

TEST(MomentumEncoder, RefusesBadOptions) {
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  auto model = make_model(0.0);
  const auto with = [&](StrategyOptions o) { return [o, &model] { Strategy s(model, o); }; };
  EXPECT_THAT(with(StrategyOptions::contaccum(8, 2, 12).bank_encoder(BankEncoder::Momentum).momentum(1.0)),
              ThrowsMessage<c10::Error>(HasSubstr("StrategyOptions::momentum must be in [0, 1), got 1")));
  EXPECT_THAT(with(StrategyOptions::grad_accum(8, 2).bank_encoder(BankEncoder::Momentum)),
              ThrowsMessage<c10::Error>(HasSubstr("bank_encoder = momentum needs banks")));
  EXPECT_THAT([] { MomentumEncoder(-0.1); },
              ThrowsMessage<c10::Error>(HasSubstr("momentum must be in [0, 1), got -0.1")));
}

}  // namespace
}  // namespace contaccum
