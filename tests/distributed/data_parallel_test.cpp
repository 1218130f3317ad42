// Data parallelism over real c10d collectives (Gloo over an in-memory store,
// one thread per rank): for every strategy, W ranks with micro-batch n give
// the gradients, losses and banks of one process with micro-batch W x n.
#include "test_util.h"

#include <contaccum/distributed/process_group.h>
#include <contaccum/strategy/strategy.h>

#include <functional>
#include <thread>

namespace contaccum {
namespace {

using test::make_model;
using test::random_batch;

constexpr int64_t kTotal = 16, kPerRank = 2, kHard = 1, kSteps = 4, kMemory = 24;

struct ParallelCase {
  std::string name;
  // The options with micro-batch `micro` (per rank, or the reference's W x n).
  std::function<StrategyOptions(int64_t micro)> options;
};

std::vector<ParallelCase> cases() {
  auto bank = [](int64_t m) { return StrategyOptions::contaccum(kTotal, m, kMemory); };
  return {
      {"full_batch", [](int64_t) { return StrategyOptions::full_batch(kTotal); }},
      {"grad_accum", [](int64_t m) { return StrategyOptions::grad_accum(kTotal, m); }},
      {"grad_cache", [](int64_t m) { return StrategyOptions::grad_cache(kTotal, m); }},
      {"contaccum", bank},
      {"contaccum_grad_cache", [](int64_t m) { return StrategyOptions::contaccum_grad_cache(kTotal, m, kMemory); }},
      {"no_query_bank", [=](int64_t m) { return bank(m).query_bank(false); }},
      {"no_passage_bank", [=](int64_t m) { return bank(m).passage_bank(false); }},
      {"no_banked_hard_negatives", [=](int64_t m) { return bank(m).bank_hard_negatives(false); }},
      {"clear_banks_after_step", [=](int64_t m) { return bank(m).clear_banks_after_step(true); }},
      {"cosine_temperature",
       [=](int64_t m) { return bank(m).loss(InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05)); }},
      // The banks come from the moving average: it must move identically on
      // every rank.
      {"momentum_bank_encoder", [=](int64_t m) { return bank(m).bank_encoder(BankEncoder::Momentum).momentum(0.5); }},
  };
}

struct StepResult {
  double loss = 0.0;
  int64_t masked = 0;
  std::vector<std::pair<std::string, torch::Tensor>> grads;
  torch::Tensor query_bank, passage_bank, bank_scores;
};

StepResult snapshot(const Strategy& s, const StepStats& stats) {
  StepResult r;
  r.loss = stats.loss;
  r.masked = stats.masked.total();
  r.grads = test::grads_of(s.model());
  if (!s.query_bank().empty()) r.query_bank = s.query_bank().view().clone();
  if (!s.passage_bank().empty()) r.passage_bank = s.passage_bank().view().clone();
  if (s.bank_scores().size() > 0) r.bank_scores = s.bank_scores().row_logsumexp().clone();
  return r;
}

void sgd(DualEncoder& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.grad().defined()) p.sub_(0.5 * p.grad());
  }
}

// The model scores as the case's loss does (the model owns the similarity).
DualEncoder seeded_model(const ParallelCase& c) {
  torch::manual_seed(11);
  return make_model(0.0, false, 97, 16, c.options(kTotal).loss().similarity() == Similarity::Cosine);
}

// The reference's results per step, then every rank's.
// With `colliding`, the batches' passage identities come from a small pool:
// false negatives within each batch and with the banks, masked alike in
// both computations.
std::pair<std::vector<StepResult>, std::vector<std::vector<StepResult>>> run(const ParallelCase& c, int64_t world,
                                                                             bool colliding = false) {
  torch::manual_seed(5);
  std::vector<TrainingBatch> batches;
  for (int64_t s = 0; s < kSteps; ++s) {
    auto batch = random_batch(kTotal, kHard);
    batches.push_back(colliding ? test::with_colliding_ids(batch, 3 * kTotal / 2) : batch);
  }

  std::vector<StepResult> reference;
  {
    auto model = seeded_model(c);
    Strategy strategy(model, c.options(world * kPerRank));
    for (const auto& b : batches) {
      const auto stats = test::step(strategy, b);
      reference.push_back(snapshot(strategy, stats));
      sgd(model);
      strategy.update_bank_encoder();
    }
  }
  auto collectives = make_in_process_group(world, DistributedOptions().timeout_seconds(60));
  std::vector<std::vector<StepResult>> ranks(static_cast<size_t>(world));
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<DualEncoder> models;
  for (int64_t r = 0; r < world; ++r) models.push_back(seeded_model(c));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto& model = models[static_cast<size_t>(r)];
        auto& collective = *collectives[static_cast<size_t>(r)];
        Strategy strategy(model, c.options(kPerRank));
        strategy.set_collective(collectives[static_cast<size_t>(r)]);
        for (const auto& b : batches) {
          const auto stats = test::step(strategy, b);
          // The trainer's reduction: one sum over the ranks.
          std::vector<torch::Tensor> grads;
          for (auto& p : model->parameters()) {
            if (p.grad().defined()) grads.push_back(p.grad());
          }
          collective.all_reduce_sum(grads);
          ranks[static_cast<size_t>(r)].push_back(snapshot(strategy, stats));
          sgd(model);
          strategy.update_bank_encoder();
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < world; ++r)
    EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;  // caught std::exception text
  return {reference, ranks};
}

void expect_same_tensor(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.defined(), want.defined()) << what;
  if (!want.defined()) return;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  EXPECT_TRUE(torch::allclose(got, want, 1e-10, 1e-12))
      << what << " differs by " << (got - want).abs().max().item<double>();
}

class DataParallel : public ::testing::TestWithParam<int64_t> {};

void expect_ranks_equal_one_process(int64_t world, bool colliding) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name + " on " + std::to_string(world) + " ranks" + (colliding ? ", colliding" : ""));
    const auto [reference, ranks] = run(c, world, colliding);
    int64_t masked = 0;
    for (const auto& step : reference) masked += step.masked;
    EXPECT_EQ(masked > 0, colliding) << "false negatives occur exactly when the identities collide";
    for (int64_t r = 0; r < world; ++r) {
      const auto& mine = ranks[static_cast<size_t>(r)];
      ASSERT_EQ(mine.size(), reference.size());
      for (size_t s = 0; s < reference.size(); ++s) {
        SCOPED_TRACE("rank " + std::to_string(r) + ", step " + std::to_string(s + 1));
        EXPECT_NEAR(mine[s].loss, reference[s].loss, 1e-12 * std::max(1.0, std::abs(reference[s].loss)));
        test::expect_same_grads(mine[s].grads, reference[s].grads, 1e-10);
        expect_same_tensor(mine[s].query_bank, reference[s].query_bank, "query bank");
        expect_same_tensor(mine[s].passage_bank, reference[s].passage_bank, "passage bank");
        expect_same_tensor(mine[s].bank_scores, reference[s].bank_scores, "bank score cache");
        // Every rank holds the very same banks, bit for bit.
        const auto& first = ranks[0][s];
        if (first.passage_bank.defined()) {
          EXPECT_TRUE(torch::equal(mine[s].passage_bank, first.passage_bank));
        }
        if (first.query_bank.defined()) {
          EXPECT_TRUE(torch::equal(mine[s].query_bank, first.query_bank));
        }
        EXPECT_EQ(mine[s].loss, first.loss);
        EXPECT_EQ(mine[s].masked, reference[s].masked) << "masked entries";
      }
    }
    // The banks did wrap: more examples went in than they hold.
    if (reference.back().passage_bank.defined() && c.name != "clear_banks_after_step") {
      EXPECT_EQ(reference.back().passage_bank.size(0), kMemory);
    }
  }
}

TEST_P(DataParallel, EveryStrategyEqualsOneProcessWithMicroBatchWTimesN) {
  expect_ranks_equal_one_process(GetParam(), false);
}

// The same with false negatives everywhere: the ranks mask the columns the
// one process masks (identities travel with the global batch every rank
// collates).
TEST_P(DataParallel, MaskedFalseNegativesEqualOneProcess) { expect_ranks_equal_one_process(GetParam(), true); }

INSTANTIATE_TEST_SUITE_P(Ranks, DataParallel, ::testing::Values(2, 4),
                         [](const auto& info) { return std::to_string(info.param) + "Ranks"; });

TEST(DataParallel, RefusesAMicroBatchThatDoesNotTileTheBatch) {
  // 2 ranks of micro-batch 4 cannot tile 20 rows into global micro-batches.
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  auto group = make_in_process_group(2);
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      Strategy s(make_model(0.0), StrategyOptions::grad_accum(20, 4));
      errors[static_cast<size_t>(r)] = test::error_of([&] { s.set_collective(group[static_cast<size_t>(r)]); });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_THAT(errors[0], ::testing::HasSubstr("2 ranks x micro_batch 4 = 8 rows per global micro-batch must divide "
                                              "total_batch (20)"));
}

TEST(DataParallelCollective, GathersUnevenRowsAndBroadcastsText) {
  auto group = make_in_process_group(3);
  std::vector<std::vector<torch::Tensor>> got(3);
  std::vector<std::string> texts = {"from rank zero", "", "x"};
  std::vector<std::thread> threads;
  const std::vector<int64_t> counts = {2, 0, 3};
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      auto mine = torch::full({counts[static_cast<size_t>(r)], 2}, static_cast<double>(r), torch::kDouble);
      got[static_cast<size_t>(r)] = all_gather_rows(*group[static_cast<size_t>(r)], mine, counts);
      broadcast_string(*group[static_cast<size_t>(r)], texts[static_cast<size_t>(r)]);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(got[static_cast<size_t>(r)].size(), 3u);
    for (int from = 0; from < 3; ++from) {
      const auto& t = got[static_cast<size_t>(r)][static_cast<size_t>(from)];
      EXPECT_EQ(t.size(0), counts[static_cast<size_t>(from)]);
      if (t.numel() > 0) {
        EXPECT_EQ(t.min().item<double>(), from);
        EXPECT_EQ(t.max().item<double>(), from);
      }
    }
    EXPECT_EQ(texts[static_cast<size_t>(r)], "from rank zero");
  }
}

TEST(DataParallelCollective, SumsEveryTensorInBuckets) {
  // A bucket of 16 bytes holds two floats: five tensors make several buckets.
  auto group = make_in_process_group(2, DistributedOptions().bucket_bytes(16));
  std::vector<std::vector<torch::Tensor>> tensors(2);
  torch::manual_seed(3);
  for (int r = 0; r < 2; ++r) {
    tensors[static_cast<size_t>(r)] = {torch::randn({3}), torch::randn({1}), torch::randn({2, 2}),
                                       torch::randn({2}, torch::kDouble), torch::randn({4}).slice(0, 0, 4, 2)};
  }
  std::vector<torch::Tensor> want;
  for (size_t i = 0; i < tensors[0].size(); ++i) want.push_back(tensors[0][i] + tensors[1][i]);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] { group[static_cast<size_t>(r)]->all_reduce_sum(tensors[static_cast<size_t>(r)]); });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(tensors[static_cast<size_t>(r)][i], want[i]));
  }
}

TEST(DataParallelCollective, APeerThatNeverAnswersFailsTheCollectiveWithinTheTimeout) {
  auto group = make_in_process_group(2, DistributedOptions().timeout_seconds(1.0));
  const auto start = std::chrono::steady_clock::now();
  // Rank 1 never calls: rank 0 must give up, naming itself and the timeout.
  const auto error = test::error_of([&] { group[0]->all_gather(torch::ones({2})); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(error, ::testing::HasSubstr("rank 0 of 2: all_gather failed"));
  EXPECT_THAT(error, ::testing::HasSubstr("distributed.timeout = 1 s"));
  EXPECT_LT(seconds, 10.0);
}

TEST(DistributedEnvironment, ReadsTheLaunchersVariablesAndNamesABadOne) {
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "2", 1);
  ::setenv("LOCAL_RANK", "0", 1);
  ::setenv("MASTER_ADDR", "node7", 1);
  ::setenv("MASTER_PORT", "29411", 1);
  auto env = DistributedEnvironment::from_environment();
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->rank, 2);
  EXPECT_EQ(env->master_addr, "node7");
  EXPECT_EQ(env->master_port, 29411);
  EXPECT_FALSE(env->launcher_hosts_store);
  ::setenv("RANK", "4", 1);
  EXPECT_THAT(test::error_of([] { DistributedEnvironment::from_environment(); }),
              ::testing::HasSubstr("environment variable RANK must be in [0, 3], got 4"));
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "http", 1);
  EXPECT_THAT(test::error_of([] { DistributedEnvironment::from_environment(); }),
              ::testing::HasSubstr("environment variable MASTER_PORT must be an integer, got 'http'"));
  for (const char* v : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(v);
  EXPECT_FALSE(DistributedEnvironment::from_environment().has_value());
}

}  // namespace
}  // namespace contaccum
