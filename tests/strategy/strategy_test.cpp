// The spec's equalities, on the gradients of every parameter, and the
// behaviour of the memory banks inside the strategy engine.
#include "test_util.h"

#include <deque>

#include <set>

namespace contaccum {
namespace {

using test::expect_same_grads;
using test::grads_of;
using test::make_model;
using test::random_batch;

constexpr int64_t kModelSeed = 11;

// Runs `steps` strategy steps (no optimizer) from the same model and RNG
// seeds; returns the gradients of the last step.
std::vector<std::pair<std::string, torch::Tensor>> run(const StrategyOptions& options, const TrainingBatch& batch,
                                                       double dropout, bool shared = false,
                                                       torch::Dtype dtype = torch::kDouble, uint64_t rng_seed = 5) {
  torch::manual_seed(kModelSeed);
  auto model = make_model(dropout, shared, 97, 16, options.loss().similarity() == Similarity::Cosine, dtype);
  Strategy strategy(model, options);
  torch::manual_seed(rng_seed);
  test::step(strategy, batch);
  return grads_of(model);
}

// Full batch whose encoder passes are cut into chunks of `micro` rows, so
// dropout draws the same masks in the same order as GradCache's passes.
StrategyOptions chunked_full_batch(int64_t total, int64_t micro) {
  return StrategyOptions(total, micro).negatives(NegativeScope::TotalBatch);
}

class GradCacheEquality : public ::testing::TestWithParam<bool> {};

TEST_P(GradCacheEquality, EqualsFullBatchWithDropoutActive) {
  const bool shared = GetParam();
  torch::manual_seed(21);
  const auto batch = random_batch(12, 2);
  const auto want = run(chunked_full_batch(12, 4), batch, 0.3, shared);
  const auto got = run(StrategyOptions::grad_cache(12, 4), batch, 0.3, shared);
  expect_same_grads(got, want, 1e-10);
  // Dropout really is active: another random state gives other gradients.
  const auto other = run(chunked_full_batch(12, 4), batch, 0.3, shared, torch::kDouble, 6);
  EXPECT_GT((other[0].second - want[0].second).abs().max().item<double>(), 1e-6);
}

TEST_P(GradCacheEquality, EqualsOneChunkFullBatchWithoutDropout) {
  const bool shared = GetParam();
  torch::manual_seed(22);
  const auto batch = random_batch(16, 1);
  expect_same_grads(run(StrategyOptions::grad_cache(16, 4), batch, 0.0, shared),
                    run(StrategyOptions::full_batch(16), batch, 0.0, shared), 1e-10);
}

INSTANTIATE_TEST_SUITE_P(Towers, GradCacheEquality, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Shared" : "TwoTowers"; });

TEST(GradCache, EqualsFullBatchInFloat32WithinReassociation) {
  torch::manual_seed(23);
  const auto batch = random_batch(16, 1);
  expect_same_grads(run(StrategyOptions::grad_cache(16, 4), batch, 0.2, false, torch::kFloat),
                    run(chunked_full_batch(16, 4), batch, 0.2, false, torch::kFloat), 1e-5);
}

TEST(GradCache, LeavesTheGeneratorWhereOnePassWould) {
  torch::manual_seed(24);
  const auto batch = random_batch(8, 1);
  run(chunked_full_batch(8, 2), batch, 0.3);
  const double after_full = torch::rand({1}).item<double>();
  run(StrategyOptions::grad_cache(8, 2), batch, 0.3);
  EXPECT_EQ(torch::rand({1}).item<double>(), after_full);
}

TEST(ContAccum, WithoutMemoryIsGradAccumExactly) {
  torch::manual_seed(31);
  const auto batch = random_batch(16, 1);
  const auto want = run(StrategyOptions::grad_accum(16, 4), batch, 0.25);
  const auto got = run(StrategyOptions::contaccum(16, 4, 0), batch, 0.25);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << want[i].first;
}

TEST(ContAccum, WithoutMemoryAndOneMicroBatchIsFullBatchExactly) {
  torch::manual_seed(32);
  const auto batch = random_batch(16, 2);
  const auto want = run(StrategyOptions::full_batch(16), batch, 0.25);
  const auto got = run(StrategyOptions::contaccum(16, 16, 0), batch, 0.25);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << want[i].first;
}

TEST(ContAccum, OverGradCacheWithEmptyBanksIsFullBatch) {
  torch::manual_seed(33);
  const auto batch = random_batch(12, 1);
  expect_same_grads(run(StrategyOptions::contaccum_grad_cache(12, 3, 24), batch, 0.3),
                    run(chunked_full_batch(12, 3), batch, 0.3), 1e-10);
}

TEST(ContAccum, GradAccumIsNotFullBatch) {
  // The equalities above are not vacuous: micro-batch negatives change the
  // gradient.
  torch::manual_seed(34);
  const auto batch = random_batch(12, 1);
  const auto a = run(StrategyOptions::grad_accum(12, 3), batch, 0.0);
  const auto b = run(StrategyOptions::full_batch(12), batch, 0.0);
  EXPECT_GT((a[0].second - b[0].second).abs().max().item<double>(), 1e-6);
}

// ---------------------------------------------------------------------------
// An independent ContAccum: deques of per-example tensors, explicit
// concatenation in the spec's column order, and a separate formulation of the
// "no passage bank" ablation (own positive logit + current columns).
struct ReferenceContAccum {
  StrategyOptions options;
  std::deque<torch::Tensor> bank_q;  // [d]
  std::deque<torch::Tensor> bank_p;  // [g_b, d]

  torch::Tensor sim(const torch::Tensor& a, const torch::Tensor& b) const {
    auto x = a, y = b;
    if (options.loss().similarity() == Similarity::Cosine) {
      x = x / x.norm(2, {-1}, true);
      y = y / y.norm(2, {-1}, true);
    }
    return x.matmul(y.t()) / options.loss().temperature();
  }

  double step(DualEncoder& model, const TrainingBatch& batch) {
    const int64_t N = batch.size(), micro = options.micro_batch();
    double total = 0.0;
    for (int64_t b = 0; b < N; b += micro) {
      const auto chunk = batch.slice(b, std::min(N, b + micro));
      const int64_t n = chunk.size(), g = chunk.passages_per_example();
      auto q = model->encode_queries(chunk.queries);
      auto p = model->encode_passages(chunk.passages).view({n, g, -1});
      const int64_t m = static_cast<int64_t>(bank_q.size());
      std::vector<torch::Tensor> pos{p.select(1, 0)}, neg{p.slice(1, 1).reshape({n * (g - 1), -1})};
      torch::Tensor bq, bp;
      if (m > 0) {
        bq = torch::stack(std::vector<torch::Tensor>(bank_q.begin(), bank_q.end()));
        bp = torch::stack(std::vector<torch::Tensor>(bank_p.begin(), bank_p.end()));
        if (options.passage_bank()) {
          pos.push_back(bp.select(1, 0));
          neg.push_back(bp.slice(1, 1).reshape({-1, bp.size(2)}));
        }
      }
      auto cols = torch::cat({torch::cat(pos), torch::cat(neg)});
      auto ce_sum = torch::nn::functional::cross_entropy(
          sim(q, cols), torch::arange(n), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
      int64_t rows = n;
      if (m > 0 && options.query_bank()) {
        rows += m;
        if (options.passage_bank()) {
          ce_sum = ce_sum + torch::nn::functional::cross_entropy(
                                sim(bq, cols), torch::arange(n, n + m),
                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        } else {
          auto own = (sim(bq, bp.select(1, 0))).diagonal().unsqueeze(1);
          auto logits =
              torch::cat({own, sim(bq, torch::cat({p.select(1, 0), p.slice(1, 1).reshape({n * (g - 1), -1})}))}, 1);
          ce_sum = ce_sum + torch::nn::functional::cross_entropy(
                                logits, torch::zeros({m}, torch::kLong),
                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        }
      }
      auto loss = ce_sum / static_cast<double>(rows);
      (loss * (static_cast<double>(n) / N)).backward();
      total += loss.item<double>() * n / N;
      const bool groups = options.passage_bank() && options.bank_hard_negatives();
      for (int64_t i = 0; i < n; ++i) {
        bank_q.push_back(q[i].detach().clone());
        bank_p.push_back(groups ? p[i].detach().clone() : p[i].slice(0, 0, 1).detach().clone());
        if (static_cast<int64_t>(bank_q.size()) > options.memory_size()) {
          bank_q.pop_front();
          bank_p.pop_front();
        }
      }
    }
    if (options.clear_banks_after_step()) {
      bank_q.clear();
      bank_p.clear();
    }
    return total;
  }
};

struct ReferenceCase {
  const char* name;
  StrategyOptions options;
  friend void PrintTo(const ReferenceCase& c, std::ostream* os) { *os << c.name; }
};

class ContAccumReference : public ::testing::TestWithParam<ReferenceCase> {};

TEST_P(ContAccumReference, MatchesIndependentImplementationOverSeveralSteps) {
  const auto options = GetParam().options;
  torch::manual_seed(kModelSeed);
  // The model owns the similarity; the reference normalises in its loss.
  auto model = make_model(0.2, false, 97, 16, options.loss().similarity() == Similarity::Cosine);
  torch::manual_seed(kModelSeed);
  auto ref_model = make_model(0.2);
  Strategy strategy(model, options);
  ReferenceContAccum reference{options, {}, {}};
  torch::optim::SGD opt(model->parameters(), 0.5), ref_opt(ref_model->parameters(), 0.5);

  for (int step = 0; step < 4; ++step) {
    torch::manual_seed(100 + step);
    const auto batch = random_batch(options.total_batch(), 1);
    torch::manual_seed(200 + step);
    opt.zero_grad();
    const auto stats = strategy.compute_gradients(batch);
    torch::manual_seed(200 + step);
    ref_opt.zero_grad();
    const double ref_loss = reference.step(ref_model, batch);
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_NEAR(stats.loss, ref_loss, 1e-12 * std::abs(ref_loss));
    expect_same_grads(grads_of(model), grads_of(ref_model), 1e-10);
    const int64_t seen = options.clear_banks_after_step() ? options.total_batch() : (step + 1) * options.total_batch();
    EXPECT_EQ(stats.query_bank_size, options.query_bank() ? std::min(options.memory_size(), seen) : 0);
    opt.step();
    ref_opt.step();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configurations, ContAccumReference,
    ::testing::Values(
        ReferenceCase{"BothBanksWrapWithinAStep", StrategyOptions::contaccum(8, 2, 6)},
        ReferenceCase{"BanksSpanSteps", StrategyOptions::contaccum(8, 2, 20)},
        ReferenceCase{"CosineTemperature", StrategyOptions::contaccum(8, 4, 12).loss(
                                               InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.1))},
        ReferenceCase{"NoQueryBank", StrategyOptions::contaccum(8, 2, 12).query_bank(false)},
        ReferenceCase{"NoPassageBank", StrategyOptions::contaccum(8, 2, 12).passage_bank(false)},
        ReferenceCase{"NoHardNegativeBanking", StrategyOptions::contaccum(8, 2, 12).bank_hard_negatives(false)},
        ReferenceCase{"ClearedEveryStep", StrategyOptions::contaccum(8, 2, 12).clear_banks_after_step(true)}),
    [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------

TEST(ContAccumBanks, MicroBatchKSeesTheEarlierMicroBatchesOfTheStep) {
  torch::manual_seed(41);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 100));
  const auto stats = test::step(strategy, random_batch(8, 1));
  // Micro-batch k (0-based) sees 2*2-1 in-batch negatives plus 2 passages of
  // each of the 2k banked examples.
  EXPECT_DOUBLE_EQ(stats.negatives_per_query, 3.0 + (0 + 4 + 8 + 12) / 4.0);
  EXPECT_EQ(stats.loss_groups, 4);
  EXPECT_EQ(stats.passage_bank_size, 8);
  EXPECT_DOUBLE_EQ(stats.passage_bank_fill, 0.08);
}

TEST(ContAccumBanks, HoldTheNewestExamplesAcrossStepsInFifoOrder) {
  torch::manual_seed(42);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 12));
  const auto b1 = random_batch(8, 1), b2 = random_batch(8, 1);
  test::step(strategy, b1);
  test::step(strategy, b2);
  torch::NoGradGuard no_grad;
  auto q = torch::cat({model->encode_queries(b1.queries).slice(0, 4), model->encode_queries(b2.queries)});
  auto p = torch::cat({model->encode_passages(b1.passages).slice(0, 8), model->encode_passages(b2.passages)})
               .view({12, 2, -1});
  EXPECT_TRUE(torch::allclose(strategy.query_bank().ordered().squeeze(1), q, 0, 1e-12));
  EXPECT_TRUE(torch::allclose(strategy.passage_bank().ordered(), p, 0, 1e-12));
}

TEST(ContAccumBanks, BankRowsGiveNoGradientToTheQueryTowerButDoToPassages) {
  // One micro-batch per step, so the only difference between the two runs in
  // step 2 is whether the banked queries are rows. The current rows' losses
  // are identical; only the mean's denominator changes (n vs n + m), so the
  // query tower's gradient must scale by n / (n + m) exactly, while the
  // passage tower gets extra gradient from the banked rows.
  torch::manual_seed(43);
  const auto b1 = random_batch(6, 1), b2 = random_batch(6, 1);
  auto second_step = [&](bool query_bank) {
    torch::manual_seed(kModelSeed);
    auto model = make_model(0.0);
    Strategy strategy(model, StrategyOptions::contaccum(6, 6, 6).query_bank(query_bank));
    test::step(strategy, b1);
    test::step(strategy, b2);
    return model;
  };
  auto with = second_step(true), without = second_step(false);
  const double scale = 6.0 / 12.0;
  for (size_t i = 0; i < with->query_parameters().size(); ++i) {
    EXPECT_TRUE(torch::allclose(with->query_parameters()[i].grad(), without->query_parameters()[i].grad() * scale,
                                1e-12, 1e-14));
  }
  double diff = 0.0;
  for (size_t i = 0; i < with->passage_parameters().size(); ++i) {
    diff += (with->passage_parameters()[i].grad() - without->passage_parameters()[i].grad() * scale)
                .abs()
                .sum()
                .item<double>();
  }
  EXPECT_GT(diff, 1e-6);
}

TEST(ContAccumBanks, ClearingAfterEachStepMakesEveryStepGradAccum) {
  torch::manual_seed(44);
  const auto b1 = random_batch(8, 1), b2 = random_batch(8, 1);
  torch::manual_seed(kModelSeed);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::contaccum(8, 4, 16).clear_banks_after_step(true));
  const auto s1 = test::step(strategy, b1);
  EXPECT_EQ(s1.query_bank_size, 8) << "stats report the fill before clearing";
  EXPECT_TRUE(strategy.query_bank().empty());
  EXPECT_TRUE(strategy.passage_bank().empty());
  test::step(strategy, b2);
  const auto got = grads_of(model);

  torch::manual_seed(kModelSeed);
  auto fresh = make_model(0.0);
  Strategy one_step(fresh, StrategyOptions::contaccum(8, 4, 16));
  test::step(one_step, b2);
  expect_same_grads(got, grads_of(fresh), 0.0);
}

TEST(ContAccumBanks, AblationsChangeExactlyWhatTheyShould) {
  torch::manual_seed(45);
  const auto batch = random_batch(8, 2);
  auto stats_of = [&](const StrategyOptions& o) {
    auto model = make_model(0.0);
    Strategy s(model, o);
    test::step(s, batch);
    auto stats = test::step(s, batch);  // banks full of the first step
    return std::make_tuple(stats, s.query_bank().capacity(), s.passage_bank().entries_per_row());
  };
  // Column counts without masking: the second step's banks hold the same
  // examples as its batch, whose positives masking would leave out (below).
  const auto base = StrategyOptions::contaccum(8, 4, 8).mask_false_negatives(false);
  auto [both, q_cap, group] = stats_of(base);
  EXPECT_EQ(q_cap, 8);
  EXPECT_EQ(group, 3);
  // Micro-batch 0 sees the 8 banked examples, micro-batch 1 the newest 8 too.
  EXPECT_DOUBLE_EQ(both.negatives_per_query, 4 * 3 - 1 + 8 * 3);
  EXPECT_EQ(both.masked.total(), 0);

  // Masked: each micro-batch finds its 4 examples in the bank (micro-batch 1
  // the first step's copies, micro-batch 0 those too): each current query's
  // banked positive is not its negative, and each of those 4 banked queries'
  // current positive is not theirs.
  auto [masked, masked_cap, masked_group] = stats_of(StrategyOptions(base).mask_false_negatives(true));
  EXPECT_EQ(masked.masked.bank, 2 * 4);
  EXPECT_EQ(masked.masked.banked_query, 2 * 4);
  EXPECT_EQ(masked.masked.in_batch + masked.masked.hard_negative, 0);
  EXPECT_DOUBLE_EQ(masked.negatives_per_query, 4 * 3 - 1 + 8 * 3 - 1);

  auto [no_q, no_q_cap, no_q_group] = stats_of(StrategyOptions(base).query_bank(false));
  EXPECT_EQ(no_q_cap, 0);
  EXPECT_EQ(no_q_group, 3);
  EXPECT_DOUBLE_EQ(no_q.negatives_per_query, both.negatives_per_query);
  EXPECT_EQ(no_q.query_bank_size, 0);

  auto [no_p, no_p_cap, no_p_group] = stats_of(StrategyOptions(base).passage_bank(false));
  EXPECT_EQ(no_p_cap, 8);
  EXPECT_EQ(no_p_group, 1) << "only the positives are kept, as banked queries' targets";
  EXPECT_DOUBLE_EQ(no_p.negatives_per_query, 4 * 3 - 1);

  auto [no_hn, no_hn_cap, no_hn_group] = stats_of(StrategyOptions(base).bank_hard_negatives(false));
  EXPECT_EQ(no_hn_group, 1);
  EXPECT_DOUBLE_EQ(no_hn.negatives_per_query, 4 * 3 - 1 + 8);
}

TEST(Strategy, ReportsTowerGradientNormsAndTheirRatio) {
  torch::manual_seed(46);
  auto model = make_model(0.1);
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 8));
  test::step(strategy, random_batch(8, 1));
  const auto norms = gradient_norms(model);
  auto norm = [](const std::vector<torch::Tensor>& ps) {
    double s = 0;
    for (const auto& p : ps) s += p.grad().pow(2).sum().item<double>();
    return std::sqrt(s);
  };
  EXPECT_NEAR(norms.query, norm(model->query_parameters()), 1e-12);
  EXPECT_NEAR(norms.passage, norm(model->passage_parameters()), 1e-12);
  EXPECT_NEAR(norms.ratio, norms.query / norms.passage, 1e-12);
  EXPECT_GT(norms.query, 0.0);

  auto shared = make_model(0.1, true);
  Strategy shared_strategy(shared, StrategyOptions::grad_accum(8, 2));
  test::step(shared_strategy, random_batch(8, 1));
  EXPECT_EQ(gradient_norms(shared).ratio, 1.0);
}

TEST(Strategy, PartialLastBatchUsesASmallerLastMicroBatch) {
  torch::manual_seed(47);
  const auto batch = random_batch(10, 1);
  torch::manual_seed(kModelSeed);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::grad_accum(16, 4).allow_partial_batch(true));
  const auto stats = test::step(strategy, batch);
  EXPECT_EQ(stats.loss_groups, 3);

  torch::manual_seed(kModelSeed);
  auto ref_model = make_model(0.0);
  ReferenceContAccum reference{StrategyOptions::grad_accum(16, 4), {}, {}};
  const double ref_loss = reference.step(ref_model, batch);
  EXPECT_NEAR(stats.loss, ref_loss, 1e-12);
  expect_same_grads(grads_of(model), grads_of(ref_model), 1e-12);

  Strategy strict(model, StrategyOptions::grad_accum(16, 4));
  EXPECT_THAT(
      [&] { strict.compute_gradients(batch); },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("batch has 10 examples but total_batch is 16")));
}

// `from`'s banks into `into` through a serialized archive read onto `map_to`.
void save_and_load(const Strategy& from, Strategy& into, torch::Device map_to) {
  torch::serialize::OutputArchive out;
  from.save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer, map_to);
  into.load(in);
}

TEST(Strategy, BanksSurviveSaveAndLoad) {
  torch::manual_seed(48);
  auto model = make_model(0.0);
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 12));
  test::step(strategy, random_batch(8, 1));
  test::step(strategy, random_batch(8, 1));
  Strategy restored(model, StrategyOptions::contaccum(8, 2, 12));
  save_and_load(strategy, restored, torch::kCPU);
  EXPECT_TRUE(torch::equal(restored.query_bank().ordered(), strategy.query_bank().ordered()));
  EXPECT_TRUE(torch::equal(restored.passage_bank().ordered(), strategy.passage_bank().ordered()));
}

// A checkpoint read on the CPU (or mapped anywhere) restores the banks on
// the model's device, so the next step's loss sees banks and
// representations on one device.
TEST(Strategy, BanksAreRestoredOnTheModelsDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA device";
  torch::manual_seed(49);
  auto model = make_model(0.0);
  model->to(torch::kCUDA);
  Strategy strategy(model, StrategyOptions::contaccum(8, 2, 12));
  test::step(strategy, random_batch(8, 1));
  // Mapped to the CPU, and onto the GPU as the trainer reads checkpoints
  // (every tensor of the archive there, the banks' tags too).
  for (const auto map_to : {torch::Device(torch::kCPU), torch::Device(torch::kCUDA, 0)}) {
    Strategy restored(model, StrategyOptions::contaccum(8, 2, 12));
    save_and_load(strategy, restored, map_to);
    EXPECT_TRUE(restored.query_bank().view().is_cuda());
    EXPECT_TRUE(restored.passage_bank().view().is_cuda());
    EXPECT_TRUE(torch::equal(restored.passage_bank().ordered(), strategy.passage_bank().ordered()));
    const auto stats = test::step(restored, random_batch(8, 1));
    EXPECT_TRUE(std::isfinite(stats.loss));
  }
}

// With the cosine loss the banks keep unit rows (the loss and the score cache
// then score them without normalised copies); checkpoints written before,
// whose rows are as encoded, are normalised when loaded.
// `in` copied into `out` without the entries named `skip` at its top level:
// a checkpoint as an older contaccum wrote it.
void copy_archive(torch::serialize::InputArchive& in, torch::serialize::OutputArchive& out,
                  const std::set<std::string>& skip = {}) {
  for (const auto& key : in.keys()) {
    if (skip.count(key)) continue;
    torch::Tensor tensor;
    torch::serialize::InputArchive sub;
    if (in.try_read(key, tensor)) {
      out.write(key, tensor);
    } else if (in.try_read(key, sub)) {
      torch::serialize::OutputArchive copy;
      copy_archive(sub, copy);
      out.write(key, copy);
    }
  }
}

TEST(Strategy, CosineBanksKeepUnitRowsAndOlderCheckpointsAreNormalisedOnLoad) {
  const auto cosine = StrategyOptions::contaccum(8, 2, 12).loss(InfoNCEOptions().similarity(Similarity::Cosine));
  auto norms = [](const MemoryBank& bank) { return bank.view().norm(2, {-1}); };
  torch::manual_seed(50);
  auto model = make_model(0.0, false, 97, 16, /*normalize=*/true);
  Strategy strategy(model, cosine);
  test::step(strategy, random_batch(8, 1));
  EXPECT_LE((norms(strategy.query_bank()) - 1.0).abs().max().item<double>(), 1e-12);
  EXPECT_LE((norms(strategy.passage_bank()) - 1.0).abs().max().item<double>(), 1e-12);

  // A dot-product run's banks hold the representations as encoded, and its
  // checkpoint carries no unit-row mark: like a checkpoint from before.
  auto dot_model = make_model(0.0);  // the model owns the similarity
  Strategy dot(dot_model, StrategyOptions::contaccum(8, 2, 12));
  test::step(dot, random_batch(8, 1));
  EXPECT_GT((norms(dot.passage_bank()) - 1.0).abs().max().item<double>(), 1e-3);
  Strategy restored(model, cosine);
  {
    // Without the options it was written with, which checkpoints from before
    // carry neither (a cosine run refuses a dot-product run's checkpoint).
    auto saved = test::through_bytes(dot);
    torch::serialize::OutputArchive old;
    copy_archive(saved, old, {"options"});
    std::stringstream buffer;
    old.save_to(buffer);
    torch::serialize::InputArchive in;
    in.load_from(buffer);
    restored.load(in);
  }
  const auto unit = [](const torch::Tensor& t) { return t / t.norm(2, {-1}, /*keepdim=*/true); };
  EXPECT_TRUE(torch::allclose(restored.query_bank().view(), unit(dot.query_bank().view()), 1e-14, 1e-14));
  EXPECT_TRUE(torch::allclose(restored.passage_bank().view(), unit(dot.passage_bank().view()), 1e-14, 1e-14));
  // And the score cache was rebuilt from the normalised rows, not read from
  // the dot-product run's.
  const auto want =
      bank_row_logsumexp(restored.query_bank().view().select(1, 0), restored.passage_bank().view(), cosine.loss());
  EXPECT_TRUE(torch::allclose(restored.bank_scores().row_logsumexp(), want, 1e-12, 1e-12));
}

// What the banks store comes from here: the loss returns, with its scores,
// the rows it scored, for cosine unit_rows of its inputs bit for bit (the
// inputs here of any length, as an encoder without normalisation gives
// them), with gradients flowing and without.
TEST(Strategy, TheLossReturnsTheUnitRowsOfItsInputs) {
  torch::manual_seed(52);
  const int64_t n = 6, g = 2, d = 40, m = 12;
  InfoNCEBank bank;
  bank.passages = unit_rows(torch::randn({m, g, d}));
  bank.queries = unit_rows(torch::randn({m, d}));
  bank.normalized = true;
  bank.return_scores = true;
  const auto loss = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05);
  const auto q = (torch::randn({n, d}) * 3).requires_grad_(true),
             p = (torch::randn({n, g, d}) * 3).requires_grad_(true);
  const auto result = info_nce(q, p, loss, bank);
  ASSERT_TRUE(result.bank_scores.defined());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(result.bank_scores.queries, unit_rows(q.detach())));
  EXPECT_TRUE(torch::equal(result.bank_scores.passages, unit_rows(p.detach())));
  EXPECT_FALSE(result.bank_scores.queries.requires_grad());
  EXPECT_FALSE(result.bank_scores.passages.requires_grad());
}

// The banks store the rows the loss scored (for cosine, the unit rows it
// returns with its scores, InfoNCEBankScores::queries / passages) bit for bit
// as normalising the encoded rows again would: the same unit_rows of the
// same rows. Each micro-batch is encoded here on its own, as the strategy
// encodes it, and its rows normalised by unit_rows.
TEST(Strategy, BanksHoldTheEncodedRowsAsTheLossScoredThem) {
  for (const bool cosine : {true, false}) {
    for (const bool groups : {false, true}) {
      SCOPED_TRACE(std::string(cosine ? "cosine" : "dot") + (groups ? ", hard negatives banked" : ""));
      torch::manual_seed(51);
      auto model = make_model(0.0, false, 97, 16, cosine, torch::kFloat);
      auto options = StrategyOptions::contaccum(8, 4, 16).bank_hard_negatives(groups);
      if (cosine) options.loss(InfoNCEOptions().similarity(Similarity::Cosine));
      Strategy strategy(model, options);
      const auto batch = random_batch(8, 1);
      test::step(strategy, batch);
      ASSERT_EQ(strategy.query_bank().size(), 8);
      for (int64_t b = 0; b < 8; b += 4) {
        torch::NoGradGuard no_grad;
        const auto part = batch.slice(b, b + 4);
        auto q = model->encode_queries(part.queries);
        auto p = model->encode_passages(part.passages).view({4, 2, -1});
        if (!groups) p = p.slice(1, 0, 1);
        if (cosine) q = unit_rows(q), p = unit_rows(p);
        EXPECT_TRUE(torch::equal(strategy.query_bank().view().narrow(0, b, 4).select(1, 0), q));
        EXPECT_TRUE(torch::equal(strategy.passage_bank().view().narrow(0, b, 4), p));
      }
    }
  }
}

}  // namespace
}  // namespace contaccum
