// Passage identities and several positives per query, from the training set
// through the sampler and the collator to the loss's masks.
#include "test_util.h"

#include <contaccum/data/collator.h>
#include <contaccum/data/sampler.h>

#include <set>

namespace contaccum {
namespace {

// A tokenizer stand-in: one token per character (ids 1..), padded with 0.
EncoderInput char_token_ids(const std::vector<std::string>& texts, int64_t max_length) {
  EncoderInput in;
  in.input_ids = torch::zeros({static_cast<int64_t>(texts.size()), max_length}, torch::kLong);
  in.attention_mask = torch::zeros_like(in.input_ids);
  for (size_t r = 0; r < texts.size(); ++r) {
    for (size_t t = 0; t < texts[r].size() && static_cast<int64_t>(t) < max_length; ++t) {
      in.input_ids[static_cast<int64_t>(r)][static_cast<int64_t>(t)] = 1 + static_cast<unsigned char>(texts[r][t]);
      in.attention_mask[static_cast<int64_t>(r)][static_cast<int64_t>(t)] = 1;
    }
  }
  return in;
}

// Passages 0-5 distinct, 6 the text of 2 under another id (and title), 7
// the text and title of 3. Query 0 has three relevant passages (0, 1, 2),
// query 1 one (3) in two examples' worth of qrels (3 and 4), query 2 one (5).
std::shared_ptr<TrainingSet> set_with_duplicates() {
  auto queries = std::make_shared<TextTable>();
  auto passages = std::make_shared<TextTable>();
  for (int i = 0; i < 3; ++i) queries->add("q" + std::to_string(i), "", "query " + std::to_string(i));
  for (int i = 0; i < 6; ++i) passages->add("d" + std::to_string(i), "t", "passage " + std::to_string(i));
  passages->add("copy-of-2", "t", "passage 2");
  passages->add("copy-of-3", "t", "passage 3");
  auto set = std::make_shared<TrainingSet>(queries, passages);
  set->add(0, {0, 1, 2}, {5});
  set->add(1, {3}, {6});
  set->add(1, {4}, {0});
  set->add(2, {5}, {7});
  return set;
}

TEST(PassageIdentities, IdenticalTextsAreOnePassage) {
  const auto set = set_with_duplicates();
  for (int64_t row = 0; row < 6; ++row) EXPECT_EQ(set->passage_identity(row), row);
  EXPECT_EQ(set->passage_identity(6), 2);
  EXPECT_EQ(set->passage_identity(7), 3);
}

TEST(PassageIdentities, AQuerysRelevantPassagesGatherEveryExampleAndTheQrels) {
  const auto set = set_with_duplicates();
  EXPECT_EQ(set->relevant(0), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(set->relevant(1), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(set->relevant(2), (std::vector<int64_t>{4, 3})) << "its own positive first";
  set->add_relevant(2, {7, 5});
  EXPECT_EQ(set->relevant(3), (std::vector<int64_t>{5, 7}));
  EXPECT_THROW(set->add_relevant(2, {99}), c10::Error);
}

TEST(PassageIdentities, TheSamplerDrawsOnePositiveFromSeveralSeededAndResumable) {
  const auto set = set_with_duplicates();
  auto positives_drawn = [&](uint64_t seed) {
    TrainingSampler sampler(set, SamplerOptions(4).hard_negatives(1).seed(seed).shuffle(false));
    std::vector<int64_t> drawn;
    for (int epoch = 0; epoch < 12; ++epoch) drawn.push_back(sampler.next().passages[0]);
    return drawn;
  };
  const auto drawn = positives_drawn(3);
  EXPECT_EQ(positives_drawn(3), drawn) << "a function of the seed";
  const std::set<int64_t> seen(drawn.begin(), drawn.end());
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1, 2})) << "every positive is drawn in some epoch";
  // Resumed at epoch 5: the same draws from there on.
  TrainingSampler resumed(set, SamplerOptions(4).hard_negatives(1).seed(3).shuffle(false));
  resumed.seek({5, 0});
  for (int epoch = 5; epoch < 12; ++epoch) EXPECT_EQ(resumed.next().passages[0], drawn[epoch]);
  // Examples of one positive keep it, and their negatives do not depend on
  // the draw.
  TrainingSampler sampler(set, SamplerOptions(4).hard_negatives(1).seed(3).shuffle(false));
  const auto batch = sampler.next();
  EXPECT_EQ(batch.passages[2], 3);
  EXPECT_EQ(batch.passages[3], 6);
}

TEST(PassageIdentities, TheCollatorWritesIdentitiesAndEveryRelevantPassage) {
  const auto set = set_with_duplicates();
  TrainingSampler sampler(set, SamplerOptions(4).hard_negatives(1).seed(3).shuffle(false));
  const auto indices = sampler.next();
  const auto batch =
      Collator(char_token_ids, CollatorOptions().query_max_length(8).passage_max_length(12))(*set, indices);
  ASSERT_TRUE(batch.passage_ids.defined() && batch.positive_ids.defined());
  // Passage rows 6 and 7 are passages 2 and 3.
  const auto ids = batch.passage_identities();
  EXPECT_EQ(ids[1][1].item<int64_t>(), 2) << "example 1's hard negative (row 6) is passage 2";
  EXPECT_EQ(ids[3][1].item<int64_t>(), 3) << "example 3's hard negative (row 7) is passage 3";
  ASSERT_EQ(batch.positive_ids.sizes(), (torch::IntArrayRef{4, 3}));
  std::set<int64_t> first(batch.positive_ids[0].data_ptr<int64_t>(), batch.positive_ids[0].data_ptr<int64_t>() + 3);
  EXPECT_EQ(first, (std::set<int64_t>{0, 1, 2}));
  EXPECT_TRUE(torch::equal(batch.positive_ids[1], torch::tensor({3, 4, -1}, torch::kLong)));
  // Passage identities [[t, 5], [3, 2], [4, 0], [5, 3]] (t: query 0's
  // drawn positive), a bank of passages 1 and 5. The loss masks, for query 0
  // (three relevant passages), the two that are not its target in every
  // column kind: the hard negatives of examples 1 (passage 2) and 2 (passage
  // 0), and banked passage 1; for the examples of query 1 (passages 3 and
  // 4), each other's positive (in-batch) and example 3's hard negative
  // (passage 3); for query 2 (passage 5), example 0's hard negative and the
  // banked passage 5.
  const auto q = torch::randn({4, 3}, torch::kDouble);
  const auto p = torch::randn({4, 2, 3}, torch::kDouble);
  InfoNCEBank bank;
  bank.passages = torch::randn({2, 1, 3}, torch::kDouble);
  bank.passage_ids = torch::tensor({1, 5}, torch::kLong).view({2, 1});
  const auto result =
      info_nce(q, p, InfoNCEOptions().return_scores(true), bank, InfoNCEIds{ids, batch.positive_identities()});
  EXPECT_EQ(result.masked.in_batch, 2);
  EXPECT_EQ(result.masked.hard_negative, 2 + 1 + 1 + 1);
  EXPECT_EQ(result.masked.bank, 2);
  EXPECT_EQ(torch::isinf(result.scores).sum().item<int64_t>(), result.masked.total());
}

}  // namespace
}  // namespace contaccum
