// Overlapped gathers (`StrategyOptions::overlap_gather`): with several
// ranks, each loss group's towers run while the previous group's gather is
// in flight. The collectives start and finish in that order, the results are
// bit for bit those of waiting at every gather (banks, masking), and a
// started gather behaves as `all_gather` does, failures included. The ranks
// here are threads sharing one random generator, so dropout stays off; the
// launcher test compares the two orders with dropout on, in processes.
#include "test_util.h"

#include <contaccum/distributed/process_group.h>
#include <contaccum/strategy/strategy.h>

#include <functional>
#include <thread>

namespace contaccum {
namespace {

using test::make_model;
using test::random_batch;

constexpr int64_t kTotal = 16, kPerRank = 2, kHard = 1, kSteps = 3, kMemory = 24;

// Another collective, passed through, with every gather's start and end
// written down in this rank's order.
class RecordingCollective final : public Collective {
 public:
  explicit RecordingCollective(std::shared_ptr<Collective> inner) : inner_(std::move(inner)) {}
  int64_t rank() const override { return inner_->rank(); }
  int64_t world_size() const override { return inner_->world_size(); }
  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    events.push_back("gather");
    return inner_->all_gather(tensor);
  }
  std::unique_ptr<PendingGather> start_all_gather(const torch::Tensor& tensor) override {
    const int number = started_++;
    events.push_back("start " + std::to_string(number));
    return std::make_unique<Recorded>(inner_->start_all_gather(tensor), events, number);
  }
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override { inner_->all_reduce_sum(tensors); }
  void broadcast(torch::Tensor& tensor, int64_t root) override { inner_->broadcast(tensor, root); }
  void barrier() override { inner_->barrier(); }

  std::vector<std::string> events;

 private:
  class Recorded final : public PendingGather {
   public:
    Recorded(std::unique_ptr<PendingGather> inner, std::vector<std::string>& events, int number)
        : inner_(std::move(inner)), events_(events), number_(number) {}
    torch::Tensor wait() override {
      events_.push_back("wait " + std::to_string(number_));
      return inner_->wait();
    }

   private:
    std::unique_ptr<PendingGather> inner_;
    std::vector<std::string>& events_;
    int number_;
  };
  std::shared_ptr<Collective> inner_;
  int started_ = 0;
};

struct RankRun {
  std::vector<std::string> events;  // of the first step
  std::vector<double> losses;
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> grads;  // summed over the ranks
  std::vector<torch::Tensor> banks;
};

// `world` ranks (threads) train kSteps steps of `rows` examples with
// `options` (per-rank micro-batch kPerRank); every rank's results.
std::vector<RankRun> train(const StrategyOptions& options, int64_t world = 2, int64_t rows = kTotal) {
  torch::manual_seed(5);
  std::vector<TrainingBatch> batches;
  for (int64_t s = 0; s < kSteps; ++s) batches.push_back(test::with_colliding_ids(random_batch(rows, kHard), 20));
  auto group = make_in_process_group(world, DistributedOptions().timeout_seconds(60));
  std::vector<DualEncoder> models;
  for (int64_t r = 0; r < world; ++r) {
    torch::manual_seed(11);
    models.push_back(make_model(0.0, false, 97, 16, options.loss().similarity() == Similarity::Cosine));
  }
  std::vector<RankRun> out(static_cast<size_t>(world));
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto& mine = out[static_cast<size_t>(r)];
        auto& model = models[static_cast<size_t>(r)];
        auto recording = std::make_shared<RecordingCollective>(group[static_cast<size_t>(r)]);
        Strategy strategy(model, options);
        strategy.set_collective(recording);
        for (const auto& batch : batches) {
          mine.losses.push_back(test::step(strategy, batch).loss);
          if (mine.events.empty()) mine.events = recording->events;
          std::vector<torch::Tensor> grads;
          for (auto& p : model->parameters()) grads.push_back(p.grad());
          recording->all_reduce_sum(grads);
          mine.grads.push_back(test::grads_of(model));
          if (!strategy.passage_bank().empty()) mine.banks.push_back(strategy.passage_bank().view().clone());
          if (!strategy.query_bank().empty()) mine.banks.push_back(strategy.query_bank().view().clone());
          test::sgd(model, 0.5);
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
  return out;
}

std::vector<std::pair<std::string, StrategyOptions>> direct_cases() {
  return {
      {"grad_accum", StrategyOptions::grad_accum(kTotal, kPerRank)},
      {"contaccum", StrategyOptions::contaccum(kTotal, kPerRank, kMemory)},
      {"contaccum_cosine", StrategyOptions::contaccum(kTotal, kPerRank, kMemory)
                               .loss(InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05))},
  };
}

TEST(OverlapGather, EachRankEncodesTheNextGroupBeforeWaitingForAGather) {
  // 2 ranks x 2 rows: four loss groups of 4 rows a step.
  const auto overlapped = train(StrategyOptions::grad_accum(kTotal, kPerRank));
  const std::vector<std::string> pipelined = {"start 0", "start 1", "wait 0", "start 2",
                                              "wait 1",  "start 3", "wait 2", "wait 3"};
  for (const auto& rank : overlapped) EXPECT_EQ(rank.events, pipelined);
  const auto waiting = train(StrategyOptions::grad_accum(kTotal, kPerRank).overlap_gather(false));
  const std::vector<std::string> in_turn = {"start 0", "wait 0", "start 1", "wait 1",
                                            "start 2", "wait 2", "start 3", "wait 3"};
  for (const auto& rank : waiting) EXPECT_EQ(rank.events, in_turn);
  // One group a step (full batch), GradCache's replays and the momentum
  // encoder's weight swap: nothing to overlap or not allowed to.
  for (const auto& options :
       {StrategyOptions::full_batch(kTotal), StrategyOptions::grad_cache(kTotal, kPerRank),
        StrategyOptions::contaccum(kTotal, kPerRank, kMemory).bank_encoder(BankEncoder::Momentum).momentum(0.5)}) {
    for (const auto& rank : train(options)) {
      for (size_t i = 1; i < rank.events.size(); i += 2) EXPECT_EQ(rank.events[i][0], 'w') << "event " << i;
    }
  }
}

TEST(OverlapGather, GivesTheBitsOfWaitingAtEveryGather) {
  auto cases = direct_cases();
  // 13 rows: the last group is short, and some ranks have no rows of it.
  cases.emplace_back("partial_batch", StrategyOptions::contaccum(kTotal, kPerRank, kMemory).allow_partial_batch(true));
  for (const auto& [name, options] : cases) {
    for (const int64_t world : {2, 4}) {
      SCOPED_TRACE(name + " on " + std::to_string(world) + " ranks");
      const int64_t rows = options.allow_partial_batch() ? 13 : kTotal;
      const auto overlapped = train(options, world, rows);
      const auto waiting = train(StrategyOptions(options).overlap_gather(false), world, rows);
      ASSERT_EQ(overlapped.size(), waiting.size());
      EXPECT_NE(overlapped[0].events, waiting[0].events) << "the two runs must differ in their order";
      for (size_t r = 0; r < overlapped.size(); ++r) {
        const auto &a = overlapped[r], &b = waiting[r];
        EXPECT_EQ(a.losses, b.losses) << "rank " << r;
        ASSERT_EQ(a.grads.size(), b.grads.size());
        for (size_t s = 0; s < a.grads.size(); ++s) {
          for (size_t i = 0; i < a.grads[s].size(); ++i) {
            EXPECT_TRUE(torch::equal(a.grads[s][i].second, b.grads[s][i].second))
                << "rank " << r << ", step " << s << ": " << a.grads[s][i].first;
          }
        }
        ASSERT_EQ(a.banks.size(), b.banks.size());
        for (size_t i = 0; i < a.banks.size(); ++i) EXPECT_TRUE(torch::equal(a.banks[i], b.banks[i])) << "bank " << i;
      }
    }
  }
}

TEST(OverlapGather, StartedGathersFinishInOrderWithEveryRanksRows) {
  auto group = make_in_process_group(3);
  std::vector<std::vector<torch::Tensor>> got(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      auto& collective = *group[static_cast<size_t>(r)];
      // Three gathers in flight at once, uneven rows in the middle one.
      auto first = collective.start_all_gather(torch::full({2}, 10.0 * r));
      auto second = start_all_gather_rows(collective, torch::full({r, 2}, 20.0 * r), {0, 1, 2});
      auto third = collective.start_all_gather(torch::full({1, 3}, 30.0 * r));
      got[static_cast<size_t>(r)].push_back(first->wait());
      for (const auto& t : second.wait()) got[static_cast<size_t>(r)].push_back(t);
      got[static_cast<size_t>(r)].push_back(third->wait());
      EXPECT_THAT(test::error_of([&] { third->wait(); }), ::testing::HasSubstr("waited twice"));
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    const auto& mine = got[static_cast<size_t>(r)];
    ASSERT_EQ(mine.size(), 5u);
    EXPECT_TRUE(torch::equal(mine[0], torch::tensor({0.0, 0.0, 10.0, 10.0, 20.0, 20.0}, torch::kFloat)));
    for (int from = 0; from < 3; ++from) {
      EXPECT_TRUE(torch::equal(mine[1 + from], torch::full({from, 2}, 20.0 * from))) << "rows of rank " << from;
    }
    EXPECT_TRUE(torch::equal(
        mine[4], torch::cat({torch::full({1, 3}, 0.0), torch::full({1, 3}, 30.0), torch::full({1, 3}, 60.0)})));
  }
}

TEST(OverlapGather, AStartedGatherThatNoPeerJoinsFailsWithinTheTimeout) {
  auto group = make_in_process_group(2, DistributedOptions().timeout_seconds(1.0));
  const auto start = std::chrono::steady_clock::now();
  // Rank 1 never starts it: starting returns, waiting names rank 0 and the
  // timeout.
  auto pending = group[0]->start_all_gather(torch::ones({2}));
  const auto error = test::error_of([&] { pending->wait(); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(error, ::testing::HasSubstr("rank 0 of 2: all_gather failed"));
  EXPECT_THAT(error, ::testing::HasSubstr("distributed.timeout = 1 s"));
  EXPECT_LT(seconds, 10.0);
}

TEST(OverlapGather, OneProcessGathersAtOnce) {
  LocalCollective local;
  const auto rows = torch::randn({3, 2});
  EXPECT_TRUE(local.start_all_gather(rows)->wait().is_same(rows));
  auto pending = start_all_gather_rows(local, rows, {3});
  const auto got = pending.wait();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].is_same(rows));
}

}  // namespace
}  // namespace contaccum
