// False-negative masking inside the strategy engine: the spec's equalities
// hold between masked computations on batches built to collide (within a
// batch, with the banks, through the score cache), the masking changes what
// it should, a resumed run continues bit for bit, and `false` is the
// unmasked engine.
#include "test_util.h"

namespace contaccum {
namespace {

using test::expect_same_grads;
using test::grads_of;
using test::make_model;
using test::random_batch;
using test::with_colliding_ids;

constexpr int64_t kMaskingModelSeed = 11;

std::vector<TrainingBatch> colliding_batches(int64_t steps, int64_t n, int64_t h, int64_t pool) {
  std::vector<TrainingBatch> out;
  for (int64_t s = 0; s < steps; ++s) out.push_back(with_colliding_ids(random_batch(n, h), pool));
  return out;
}

struct MaskedRun {
  std::vector<std::pair<std::string, torch::Tensor>> grads;  // of the last step
  MaskedColumns masked;                                      // summed over the steps
  double loss = 0.0;                                         // of the last step
};

// Steps of `options` from the same model and generator seeds, with one SGD
// update after each, so that later steps see banks of older weights.
MaskedRun run_masked(const StrategyOptions& options, const std::vector<TrainingBatch>& batches, double dropout = 0.0) {
  torch::manual_seed(kMaskingModelSeed);
  auto model = make_model(dropout, false, 97, 16, options.loss().similarity() == Similarity::Cosine);
  Strategy strategy(model, options);
  torch::manual_seed(5);
  MaskedRun out;
  for (const auto& b : batches) {
    const auto stats = test::step(strategy, b);
    out.masked += stats.masked;
    out.loss = stats.loss;
    out.grads = grads_of(model);
    test::sgd(model, 0.5);
  }
  return out;
}

TEST(FalseNegatives, ContAccumWithoutMemoryIsGradAccumExactlyWithCollisions) {
  torch::manual_seed(61);
  const auto batches = colliding_batches(3, 16, 1, 12);
  const auto want = run_masked(StrategyOptions::grad_accum(16, 4), batches, 0.25);
  const auto got = run_masked(StrategyOptions::contaccum(16, 4, 0), batches, 0.25);
  EXPECT_GT(want.masked.in_batch, 0);
  EXPECT_GT(want.masked.hard_negative, 0);
  for (size_t i = 0; i < want.grads.size(); ++i)
    EXPECT_TRUE(torch::equal(got.grads[i].second, want.grads[i].second)) << want.grads[i].first;
}

TEST(FalseNegatives, GradCacheEqualsFullBatchWithCollisions) {
  torch::manual_seed(62);
  const auto batches = colliding_batches(2, 12, 2, 10);
  for (const bool banks : {false, true}) {
    // With banks: ContAccum over GradCache against the chunked full batch
    // with the same banks (one loss over the whole batch either way).
    SCOPED_TRACE(banks ? "with banks" : "without banks");
    const int64_t memory = banks ? 8 : 0;
    const auto want =
        run_masked(StrategyOptions(12, 4).negatives(NegativeScope::TotalBatch).memory_size(memory), batches, 0.3);
    const auto got = run_masked(StrategyOptions::contaccum_grad_cache(12, 4, memory), batches, 0.3);
    EXPECT_GT(want.masked.total(), 0);
    EXPECT_EQ(got.masked.total(), want.masked.total()) << "both passes mask the same columns";
    expect_same_grads(got.grads, want.grads, 1e-10);
  }
}

// Banks of 8 over micro-batches of 4 from a pool of 10 identities: current
// queries meet their positives in the passage bank, banked queries theirs
// among the current passages, and the score cache's bank-by-bank block holds
// them too. The cached log-sum-exps must equal a masked recomputation.
TEST(FalseNegatives, BanksAndTheScoreCacheMaskWhatTheLossWould) {
  torch::manual_seed(63);
  const auto batches = colliding_batches(5, 8, 1, 10);
  torch::manual_seed(kMaskingModelSeed);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::contaccum(8, 4, 12));
  MaskedColumns masked;
  for (const auto& b : batches) masked += test::step(strategy, b).masked;
  EXPECT_GT(masked.bank, 0);
  EXPECT_GT(masked.banked_query, 0);
  const auto& q = strategy.query_bank();
  const auto& p = strategy.passage_bank();
  ASSERT_TRUE(q.ids().defined() && p.ids().defined());
  EXPECT_EQ(p.ids().size(1), 2) << "one identity per banked passage vector";
  const auto mask = IdentityMask::of(q.ids(), p.ids(), p.entries_per_row(), 0);
  EXPECT_GT(mask.size(), 0) << "the bank-by-bank block holds false negatives";
  const auto want = bank_row_logsumexp(q.view().select(1, 0), p.view(), strategy.options().loss(), 3, 5, mask);
  EXPECT_TRUE(torch::allclose(strategy.bank_scores().row_logsumexp(), want, 1e-12, 1e-12));
  const auto unmasked = bank_row_logsumexp(q.view().select(1, 0), p.view(), strategy.options().loss());
  EXPECT_GT((unmasked - want).abs().max().item<double>(), 1e-6) << "the mask changes the cached values";
}

TEST(FalseNegatives, AResumedRunMasksAndContinuesBitForBit) {
  torch::manual_seed(64);
  const auto batches = colliding_batches(6, 8, 1, 10);
  const auto options = StrategyOptions::contaccum(8, 4, 12);
  torch::manual_seed(kMaskingModelSeed);
  auto model = make_model(0.0);
  Strategy straight(model, options);
  for (size_t s = 0; s < 4; ++s) test::step(straight, batches[s]);
  Strategy resumed(model, options);
  auto archive = test::through_bytes(straight);
  resumed.load(archive);
  EXPECT_TRUE(torch::equal(resumed.passage_bank().ids(), straight.passage_bank().ids()));
  EXPECT_TRUE(torch::equal(resumed.query_bank().ids(), straight.query_bank().ids()));
  for (size_t s = 4; s < batches.size(); ++s) {
    const auto want_stats = test::step(straight, batches[s]);
    const auto want = grads_of(model);
    const auto got_stats = test::step(resumed, batches[s]);
    const auto got = grads_of(model);
    EXPECT_EQ(got_stats.loss, want_stats.loss);
    EXPECT_EQ(got_stats.masked.total(), want_stats.masked.total());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(got[i].second, want[i].second));
  }
  EXPECT_TRUE(torch::equal(resumed.bank_scores().row_logsumexp(), straight.bank_scores().row_logsumexp()));
}

// Off: the ids are not read; the engine computes what it computed before
// masking existed (the loss without ids, bit for bit: tests/loss). On, with
// collisions, other gradients.
TEST(FalseNegatives, OffIgnoresTheIdentitiesAndOnChangesTheGradients) {
  torch::manual_seed(65);
  const auto batches = colliding_batches(3, 8, 1, 6);
  std::vector<TrainingBatch> anonymous;
  for (auto b : batches) {
    b.passage_ids = b.positive_ids = torch::Tensor();
    anonymous.push_back(b);
  }
  const auto off = StrategyOptions::contaccum(8, 4, 8).mask_false_negatives(false);
  const auto with_ids = run_masked(off, batches);
  const auto without = run_masked(off, anonymous);
  EXPECT_EQ(with_ids.masked.total(), 0);
  for (size_t i = 0; i < without.grads.size(); ++i)
    EXPECT_TRUE(torch::equal(with_ids.grads[i].second, without.grads[i].second));
  const auto on = run_masked(StrategyOptions(off).mask_false_negatives(true), batches);
  EXPECT_GT(on.masked.total(), 0);
  EXPECT_NE(on.loss, with_ids.loss);
}

// Without ids, identities are hashes of the tokens: a passage repeated in
// the batch (same tokens) is the same passage.
TEST(FalseNegatives, IdenticalTokensAreOnePassageWithoutIds) {
  torch::manual_seed(66);
  auto batch = random_batch(8, 1);
  // Example 3's hard negative is example 0's positive, token for token.
  batch.passages.input_ids[7].copy_(batch.passages.input_ids[0]);
  batch.passages.attention_mask[7].copy_(batch.passages.attention_mask[0]);
  const auto ids = batch.passage_identities();
  EXPECT_EQ(ids[3][1].item<int64_t>(), ids[0][0].item<int64_t>());
  EXPECT_EQ(std::get<0>(torch::unique_consecutive(std::get<0>(ids.reshape({-1}).sort()))).numel(), 15);
  torch::manual_seed(kMaskingModelSeed);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::full_batch(8));
  const auto stats = test::step(strategy, batch);
  // Query 0 no longer has its positive as example 3's hard negative.
  EXPECT_EQ(stats.masked.hard_negative, 1);
  EXPECT_EQ(stats.masked.in_batch, 0);
  EXPECT_DOUBLE_EQ(stats.negatives_per_query, 8 * 2 - 1 - 1.0 / 8);
}

}  // namespace
}  // namespace contaccum
