// The bank staleness diagnostic (Strategy::measure_staleness): exact for a
// frozen encoder, equal to a hand computation after one known SGD step, and
// ages right across wrap-around, a discarded step and a checkpoint.
#include "test_util.h"

#include <contaccum/strategy/strategy.h>

#include <cmath>
#include <sstream>

namespace contaccum {
namespace {

using test::random_batch;

// A tower whose representation of a row is the table row of its first
// token: row-independent by construction, so a re-encoding of unchanged
// weights is bit for bit the banked row.
class LookupEncoderImpl : public EncoderModule {
 public:
  LookupEncoderImpl(int64_t vocab, int64_t dim) : dim_(dim) {
    table = register_parameter("table", torch::randn({vocab, dim}, torch::kDouble));
  }
  torch::Tensor forward(const EncoderInput& in) override { return table.index_select(0, in.input_ids.select(1, 0)); }
  int64_t output_dim() const override { return dim_; }
  torch::Tensor table;

 private:
  int64_t dim_;
};
TORCH_MODULE(LookupEncoder);

DualEncoder lookup_model(int64_t dim = 6) {
  return DualEncoder(LookupEncoder(97, dim).ptr(), LookupEncoder(97, dim).ptr());
}

torch::Tensor& table_of(const std::shared_ptr<EncoderModule>& tower) {
  return std::dynamic_pointer_cast<LookupEncoderImpl>(tower)->table;
}

using test::sgd;

double dot(const double* a, const double* b, int64_t d) {
  double s = 0;
  for (int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

double hand_cosine(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.contiguous(), y = b.contiguous();
  const int64_t d = x.numel();
  const double* p = x.data_ptr<double>();
  const double* q = y.data_ptr<double>();
  return dot(p, q, d) / std::sqrt(dot(p, p, d) * dot(q, q, d));
}

// Rank of row i's own column among the columns of `q_i . p_j`.
std::vector<int64_t> hand_ranks(const torch::Tensor& q, const torch::Tensor& p) {
  const auto x = q.contiguous(), y = p.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    const double own = dot(x[i].data_ptr<double>(), y[i].data_ptr<double>(), d);
    int64_t above = 0;
    for (int64_t j = 0; j < n; ++j) above += dot(x[i].data_ptr<double>(), y[j].data_ptr<double>(), d) > own;
    out.push_back(above);
  }
  return out;
}

TEST(BankStaleness, IsExactlyZeroForAFrozenEncoder) {
  torch::manual_seed(3);
  auto model = lookup_model();
  // Banks of 10, 4 examples a step: full and wrapped after 3 steps.
  Strategy strategy(model, StrategyOptions::contaccum(4, 2, 10).staleness_sample(10));
  for (int s = 0; s < 5; ++s) test::step(strategy, random_batch(4, 1));
  const auto m = strategy.measure_staleness();
  EXPECT_EQ(m.examples, 10);
  EXPECT_EQ(m.query.all.rows, 10);
  EXPECT_EQ(m.passage.all.rows, 20);  // positive and hard negative
  EXPECT_EQ(m.query.all.mean_cosine, 1.0);
  EXPECT_EQ(m.query.all.min_cosine, 1.0);
  EXPECT_EQ(m.passage.all.mean_cosine, 1.0);
  EXPECT_EQ(m.passage.all.min_cosine, 1.0);
  EXPECT_EQ(m.rank_changed, 0.0);
  EXPECT_EQ(m.ranked, 10);
  for (const auto& b : m.passage.by_age) EXPECT_EQ(b.min_cosine, 1.0);
}

TEST(BankStaleness, AFrozenBagOfEmbeddingsEncoderIsFreshToRounding) {
  torch::manual_seed(4);
  auto model = test::make_model(0.0);  // float64, a projection layer
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 16).staleness_sample(16));
  for (int s = 0; s < 3; ++s) test::step(strategy, random_batch(8, 1));
  const auto m = strategy.measure_staleness();
  EXPECT_EQ(m.examples, 16);
  EXPECT_GE(m.query.all.min_cosine, 1.0 - 1e-12);
  EXPECT_GE(m.passage.all.min_cosine, 1.0 - 1e-12);
}

TEST(BankStaleness, AfterOneSgdStepWithAKnownGradientMatchesAHandComputation) {
  torch::manual_seed(5);
  auto model = lookup_model();
  Strategy strategy(model, StrategyOptions::contaccum(8, 4, 8).staleness_sample(8));
  const auto batch = random_batch(8, 1);
  test::step(strategy, batch);
  // The banked rows are the tables' rows before the step.
  const auto q_before = table_of(model->query_encoder()).detach().clone();
  const auto p_before = table_of(model->passage_encoder()).detach().clone();
  // A known gradient instead of the loss's, then an SGD step of lr 0.3.
  for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p);
  sgd(model, 0.3);
  const auto q_after = table_of(model->query_encoder()).detach();
  const auto p_after = table_of(model->passage_encoder()).detach();
  const auto m = strategy.measure_staleness();

  // Slots 0..7 hold examples 0..7 (one step, in order).
  const auto q_ids = batch.queries.input_ids.select(1, 0);
  const auto p_ids = batch.passages.input_ids.select(1, 0);
  double q_sum = 0, q_min = 2, p_sum = 0, p_min = 2;
  for (int64_t i = 0; i < 8; ++i) {
    const int64_t qi = q_ids[i].item<int64_t>();
    const double c = hand_cosine(q_before[qi], q_after[qi]);
    q_sum += c;
    q_min = std::min(q_min, c);
    for (int64_t e = 0; e < 2; ++e) {
      const int64_t pi = p_ids[2 * i + e].item<int64_t>();
      const double cp = hand_cosine(p_before[pi], p_after[pi]);
      p_sum += cp;
      p_min = std::min(p_min, cp);
    }
  }
  EXPECT_NEAR(m.query.all.mean_cosine, q_sum / 8, 1e-14);
  EXPECT_NEAR(m.query.all.min_cosine, q_min, 1e-14);
  EXPECT_NEAR(m.passage.all.mean_cosine, p_sum / 16, 1e-14);
  EXPECT_NEAR(m.passage.all.min_cosine, p_min, 1e-14);
  EXPECT_LT(m.query.all.min_cosine, 0.999);  // the step did move them

  // Positives (every other passage row) ranked for their own query, before
  // and after.
  const auto positives = p_ids.slice(0, 0, 16, 2);
  const auto before = hand_ranks(q_before.index_select(0, q_ids), p_before.index_select(0, positives));
  const auto after = hand_ranks(q_after.index_select(0, q_ids), p_after.index_select(0, positives));
  int64_t changed = 0;
  for (size_t i = 0; i < before.size(); ++i) changed += before[i] != after[i];
  EXPECT_EQ(m.ranked, 8);
  EXPECT_DOUBLE_EQ(m.rank_changed, static_cast<double>(changed) / 8);

  // One step ago, every row: one bucket of age 1.
  ASSERT_EQ(m.query.by_age.size(), 1u);
  EXPECT_EQ(m.query.by_age[0].min_age, 1);
  EXPECT_EQ(m.query.by_age[0].max_age, 1);
  EXPECT_EQ(m.query.by_age[0].rows, 8);
}

// Tag (steps done before the write) of every slot of a FIFO of `capacity`
// after `steps` steps of `per_step` rows: row k of the run went to slot
// k % capacity during step k / per_step.
std::vector<int64_t> expected_tags(int64_t capacity, int64_t per_step, int64_t steps) {
  const int64_t rows = per_step * steps;
  std::vector<int64_t> tags(static_cast<size_t>(std::min(rows, capacity)));
  for (int64_t k = 0; k < rows; ++k) tags[static_cast<size_t>(k % capacity)] = k / per_step;
  return tags;
}

TEST(BankStaleness, AgesAreRightAcrossWrapAroundADiscardedStepAndACheckpoint) {
  torch::manual_seed(6);
  auto model = lookup_model();
  const auto options = StrategyOptions::contaccum(4, 2, 10).staleness_sample(10);
  Strategy strategy(model, options);
  for (int64_t s = 1; s <= 5; ++s) {
    test::step(strategy, random_batch(4, 1));
    EXPECT_EQ(strategy.passage_bank().tags(), expected_tags(10, 4, s)) << "after step " << s;
    EXPECT_EQ(strategy.query_bank().tags(), expected_tags(10, 4, s)) << "after step " << s;
  }
  // A discarded step leaves the tags (and the step count) as they were.
  test::step(strategy, random_batch(4, 1));
  strategy.discard_step();
  EXPECT_EQ(strategy.steps(), 5);
  EXPECT_EQ(strategy.passage_bank().tags(), expected_tags(10, 4, 5));

  // Ages by bucket after 5 steps: slots hold steps 3, 4 and 5 (tags 2..4):
  // ages 3 (2 rows), 2 (4 rows), 1 (4 rows).
  auto m = strategy.measure_staleness();
  ASSERT_EQ(m.query.by_age.size(), 2u);
  EXPECT_EQ(m.query.by_age[0].min_age, 1);
  EXPECT_EQ(m.query.by_age[0].rows, 4);
  EXPECT_EQ(m.query.by_age[1].min_age, 2);
  EXPECT_EQ(m.query.by_age[1].max_age, 3);
  EXPECT_EQ(m.query.by_age[1].rows, 6);

  // Through a checkpoint into a fresh strategy: the same tags, and the same
  // ages as both go on.
  auto in = test::through_bytes(strategy);
  Strategy restored(model, options);
  restored.load(in);
  EXPECT_EQ(restored.steps(), 5);
  EXPECT_EQ(restored.passage_bank().tags(), strategy.passage_bank().tags());
  for (int64_t s = 6; s <= 8; ++s) {
    const auto batch = random_batch(4, 1);
    test::step(strategy, batch);
    test::step(restored, batch);
    EXPECT_EQ(restored.passage_bank().tags(), expected_tags(10, 4, s)) << "after step " << s;
  }
  m = restored.measure_staleness();
  const auto want = strategy.measure_staleness();
  EXPECT_EQ(m.examples, 10);
  EXPECT_EQ(m.query.all.mean_cosine, want.query.all.mean_cosine);
  ASSERT_EQ(m.query.by_age.size(), want.query.by_age.size());
  for (size_t b = 0; b < m.query.by_age.size(); ++b) EXPECT_EQ(m.query.by_age[b].rows, want.query.by_age[b].rows);
}

TEST(BankStaleness, AMeasuredRunTrainsBitForBitAsAnUnmeasuredOne) {
  std::vector<torch::Tensor> finals[2];
  for (int measured = 0; measured < 2; ++measured) {
    torch::manual_seed(7);
    auto model = test::make_model(0.3);  // dropout: the generator must not move
    Strategy strategy(model, StrategyOptions::contaccum(8, 2, 12).staleness_sample(measured ? 5 : 0));
    torch::manual_seed(8);
    for (int s = 0; s < 4; ++s) {
      test::step(strategy, random_batch(8, 1));
      sgd(model, 0.1);
      if (measured) {
        const auto m = strategy.measure_staleness();
        // Slots 0, 2, 4, 7, 9 of 12; slot 9 is written in step 2.
        EXPECT_EQ(m.examples, s == 0 ? 4 : 5);
        EXPECT_TRUE(model->is_training());
      }
    }
    for (const auto& p : model->parameters()) finals[measured].push_back(p.detach().clone());
    finals[measured].push_back(strategy.passage_bank().view().clone());
  }
  ASSERT_EQ(finals[0].size(), finals[1].size());
  for (size_t i = 0; i < finals[0].size(); ++i) EXPECT_TRUE(torch::equal(finals[0][i], finals[1][i])) << i;
}

TEST(BankStaleness, RefusesToMeasureWithoutASample) {
  auto model = lookup_model();
  Strategy strategy(model, StrategyOptions::contaccum(4, 2, 10));
  EXPECT_THAT([&] { strategy.measure_staleness(); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("set StrategyOptions::staleness_sample > 0")));
}

}  // namespace
}  // namespace contaccum
