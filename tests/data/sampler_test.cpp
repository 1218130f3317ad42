#include "test_util.h"

#include <contaccum/data/batch_loader.h>
#include <contaccum/data/collator.h>
#include <contaccum/data/prefetcher.h>
#include <contaccum/data/sampler.h>

#include <set>

namespace contaccum {
namespace {

// 10 examples over 30 passages; example i: positive i, hard negatives
// 10 + i .. 10 + i + (i % 4) - 1, other negative 20 + i when i is even.
std::shared_ptr<TrainingSet> make_set(int64_t examples = 10) {
  auto queries = std::make_shared<TextTable>();
  auto passages = std::make_shared<TextTable>();
  for (int64_t i = 0; i < examples; ++i) queries->add("", "", "query " + std::to_string(i));
  for (int64_t i = 0; i < 3 * examples; ++i) passages->add("", i % 2 ? "title" : "", "passage " + std::to_string(i));
  auto set = std::make_shared<TrainingSet>(queries, passages);
  for (int64_t i = 0; i < examples; ++i) {
    std::vector<int64_t> hard, other;
    for (int64_t k = 0; k < i % 4; ++k) hard.push_back(examples + (i + k) % examples);
    if (i % 2 == 0) other.push_back(2 * examples + i);
    set->add(i, {i}, hard, other);
  }
  return set;
}

std::vector<BatchIndices> take(TrainingSampler& s, int n) {
  std::vector<BatchIndices> out;
  for (int i = 0; i < n; ++i) out.push_back(s.next());
  return out;
}

TEST(TrainingSampler, EveryEpochCoversEveryExampleOnceInASeededOrder) {
  auto set = make_set();
  TrainingSampler sampler(set, SamplerOptions(3).hard_negatives(2).seed(7).drop_last(false));
  EXPECT_EQ(sampler.batches_per_epoch(), 4);
  std::vector<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    for (int b = 0; b < 4; ++b) {
      const auto batch = sampler.next();
      EXPECT_EQ(batch.position.epoch, epoch);
      seen.insert(seen.end(), batch.examples.begin(), batch.examples.end());
    }
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 10u);
    EXPECT_EQ(seen.size(), 10u);
    orders.push_back(seen);
  }
  EXPECT_NE(orders[0], orders[1]) << "each epoch has its own order";

  TrainingSampler drop(set, SamplerOptions(3).seed(7));
  EXPECT_EQ(drop.batches_per_epoch(), 3);
  for (int b = 0; b < 3; ++b) EXPECT_EQ(drop.next().examples.size(), 3u);
  EXPECT_EQ(drop.position().epoch, 1);
}

TEST(TrainingSampler, NegativesFollowTheFallbackOrderAndNeverRepeat) {
  auto set = make_set();
  const int64_t h = 3;
  TrainingSampler sampler(set, SamplerOptions(5).hard_negatives(h).seed(3));
  for (const auto& batch : take(sampler, 6)) {
    ASSERT_EQ(batch.passages.size(), batch.examples.size() * (1 + h));
    for (size_t i = 0; i < batch.examples.size(); ++i) {
      const int64_t e = batch.examples[i];
      const auto group =
          std::vector<int64_t>(batch.passages.begin() + i * (1 + h), batch.passages.begin() + (i + 1) * (1 + h));
      EXPECT_EQ(group[0], set->positives(e)[0]);
      EXPECT_EQ(batch.queries[i], set->query(e));
      const std::set<int64_t> negatives(group.begin() + 1, group.end());
      EXPECT_EQ(negatives.size(), static_cast<size_t>(h)) << "no repeats";
      EXPECT_EQ(negatives.count(group[0]), 0u) << "never the positive";
      // All mined hard negatives are used before anything else (each example
      // has fewer than h).
      for (const auto hn : set->hard_negatives(e)) EXPECT_EQ(negatives.count(hn), 1u) << "example " << e;
      if (set->hard_negatives(e).size() + set->other_negatives(e).size() <= static_cast<size_t>(h)) {
        for (const auto o : set->other_negatives(e)) EXPECT_EQ(negatives.count(o), 1u);
      }
    }
  }
}

TEST(TrainingSampler, SubsamplesHardNegativesWhenThereAreMore) {
  auto set = make_set();
  TrainingSampler sampler(set, SamplerOptions(10).hard_negatives(1).seed(1));
  std::map<int64_t, std::set<int64_t>> drawn;  // example 3 has 3 hard negatives
  for (int epoch = 0; epoch < 30; ++epoch) {
    const auto batch = sampler.next();
    for (size_t i = 0; i < batch.examples.size(); ++i) {
      if (batch.examples[i] == 3) drawn[3].insert(batch.passages[2 * i + 1]);
    }
  }
  const auto hard = set->hard_negatives(3);
  EXPECT_EQ(drawn[3], std::set<int64_t>(hard.begin(), hard.end())) << "all three get drawn over 30 epochs";
}

TEST(TrainingSampler, IsDeterministicAndResumable) {
  auto set = make_set();
  const auto options = SamplerOptions(4).hard_negatives(2).seed(11);
  TrainingSampler a(set, options), b(set, options), c(set, SamplerOptions(options).seed(12));
  const auto straight = take(a, 9);
  const auto again = take(b, 9);
  bool differs = false;
  const auto other = take(c, 9);
  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_EQ(straight[i].passages, again[i].passages);
    differs = differs || straight[i].passages != other[i].passages;
  }
  EXPECT_TRUE(differs) << "another seed gives other batches";

  TrainingSampler resumed(set, options);
  resumed.seek(straight[3].next);
  for (size_t i = 4; i < straight.size(); ++i) {
    const auto batch = resumed.next();
    EXPECT_EQ(batch.position, straight[i].position);
    EXPECT_EQ(batch.passages, straight[i].passages) << "batch " << i;
  }
  EXPECT_THAT(
      [&] {
        resumed.seek({0, 2});
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("outside an epoch of 2 batches")));
}

TEST(TrainingSampler, RejectsBadOptions) {
  auto set = make_set();
  EXPECT_THAT([&] { TrainingSampler(set, SamplerOptions(0)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("total_batch must be > 0, got 0")));
  EXPECT_THAT(
      [&] { TrainingSampler(set, SamplerOptions(11)); },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("10 examples make no batch of total_batch = 11")));
  EXPECT_THAT([&] { TrainingSampler(set, SamplerOptions(2).hard_negatives(-1)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("hard_negatives must be >= 0, got -1")));
}

// A stand-in tokenizer: one id per word, so the collated tensors can be read
// back.
EncoderInput words(const std::vector<std::string>& texts, int64_t max_length) {
  std::vector<std::vector<int64_t>> rows;
  int64_t width = 1;
  for (const auto& t : texts) {
    std::vector<int64_t> row;
    std::istringstream in(t);
    std::string w;
    while (in >> w && static_cast<int64_t>(row.size()) < max_length) row.push_back(static_cast<int64_t>(w.size()));
    width = std::max<int64_t>(width, static_cast<int64_t>(row.size()));
    rows.push_back(row);
  }
  EncoderInput in;
  in.input_ids = torch::zeros({static_cast<int64_t>(texts.size()), width}, torch::kLong);
  in.attention_mask = torch::zeros_like(in.input_ids);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      in.input_ids[r][c] = rows[r][c];
      in.attention_mask[r][c] = 1;
    }
  }
  return in;
}

TEST(Collator, BuildsTheExampleMajorBatchWithSeparateLimits) {
  auto set = make_set();
  TrainingSampler sampler(set, SamplerOptions(4).hard_negatives(1).seed(2));
  Collator collate(words, CollatorOptions().query_max_length(1).passage_max_length(3));
  const auto indices = sampler.next();
  const auto batch = collate(*set, indices);
  EXPECT_EQ(batch.size(), 4);
  EXPECT_EQ(batch.hard_negatives, 1);
  EXPECT_EQ(batch.queries.input_ids.size(1), 1) << "queries cut to 1 token";
  // Odd passages have a title: "title passage N" is 3 words, even ones 2.
  for (int64_t r = 0; r < 8; ++r) {
    const int64_t row = indices.passages[static_cast<size_t>(r)];
    EXPECT_EQ(batch.passages.attention_mask[r].sum().item<int64_t>(), row % 2 ? 3 : 2);
  }
}

TEST(Prefetcher, DeliversInOrderAndRethrowsProducerErrors) {
  int produced = 0;
  Prefetcher<int> ok([&]() -> std::optional<int> {
    if (produced == 5) return std::nullopt;
    return produced++;
  });
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ok.next(), i);
  EXPECT_FALSE(ok.next().has_value());
  EXPECT_FALSE(ok.next().has_value());

  int calls = 0;
  Prefetcher<int> failing([&]() -> std::optional<int> {
    if (calls++ == 2) throw std::runtime_error("tokenizer exploded");
    return calls;
  });
  EXPECT_EQ(failing.next(), 1);
  EXPECT_EQ(failing.next(), 2);
  EXPECT_THAT([&] { failing.next(); }, ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("exploded")));
}

TEST(Prefetcher, StopsAnEndlessProducerOnDestruction) {
  std::atomic<int> calls{0};
  {
    Prefetcher<int> endless([&]() -> std::optional<int> { return calls++; }, 3);
    EXPECT_EQ(endless.next(), 0);
  }
  EXPECT_LE(calls.load(), 5) << "at most depth + 2 productions";
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

TEST(BatchLoader, MatchesSamplerPlusCollatorRunInline) {
  auto set = make_set();
  const auto options = SamplerOptions(4).hard_negatives(1).seed(9);
  Collator collate(words);
  BatchLoader loader(TrainingSampler(set, options), collate, /*prefetch=*/2, /*max_batches=*/5);
  TrainingSampler inline_sampler(set, options);
  for (int i = 0; i < 5; ++i) {
    auto item = loader.next();
    ASSERT_TRUE(item.has_value());
    const auto indices = inline_sampler.next();
    EXPECT_EQ(item->indices.passages, indices.passages);
    EXPECT_TRUE(torch::equal(item->batch.passages.input_ids, collate(*set, indices).passages.input_ids));
  }
  EXPECT_FALSE(loader.next().has_value());
}

}  // namespace
}  // namespace contaccum
