// bf16 on real text (debpkg-small: the first 2,000 passages and queries of
// ../shared/data/debpkg for the vocabulary, 50 batches sampled from its
// training examples with one BM25 hard negative each): every strategy
// trains 50 steps in bf16 with losses within 5% of fp32's, step for step.
// Skipped without the data set.
#include "test_util.h"

#include <contaccum/data/collator.h>
#include <contaccum/data/readers.h>
#include <contaccum/data/sampler.h>
#include <contaccum/text/vocab_builder.h>
#include <contaccum/text/wordpiece_tokenizer.h>

#include <filesystem>
#include <numeric>

namespace contaccum {
namespace {

const std::string kDir = CONTACCUM_TEST_DIR "/../../shared/data/debpkg";

TEST(PrecisionOnDebpkg, EveryStrategyTrains50StepsInBf16NearFp32) {
  if (!std::filesystem::exists(kDir + "/corpus.jsonl")) GTEST_SKIP() << "no debpkg data set at " << kDir;
  const auto lenient = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  auto corpus = std::make_shared<TextTable>(read_beir_corpus(kDir + "/corpus.jsonl", lenient));
  auto queries = std::make_shared<TextTable>(read_beir_queries(kDir + "/queries.jsonl", lenient));
  std::shared_ptr<const TrainingSet> set =
      std::make_shared<TrainingSet>(read_hard_negatives(kDir + "/train-hard-negatives.tsv", queries, corpus, lenient));
  std::vector<std::string> texts;
  for (int64_t row = 0; row < 2000; ++row) {
    texts.push_back(corpus->full_text(row));
    texts.emplace_back(queries->text(row));
  }
  const WordPieceTokenizer tokenizer(train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(4000)));
  const Collator collate([&](const std::vector<std::string>& t, int64_t n) { return tokenizer.encode_batch(t, n); },
                         CollatorOptions().query_max_length(24).passage_max_length(64));
  TrainingSampler sampler(set, SamplerOptions(16).hard_negatives(1).seed(7));
  std::vector<TrainingBatch> batches;
  for (int i = 0; i < 50; ++i) batches.push_back(collate(*set, sampler.next()));

  for (const auto& name : StrategyOptions::preset_names()) {
    std::vector<std::vector<double>> curves;
    for (const auto precision : {Precision::Fp32, Precision::Bf16}) {
      torch::manual_seed(3);
      auto model = test::make_model(0.1, /*shared=*/true, 4000, 64, /*normalize=*/true, torch::kFloat);
      Strategy strategy(
          model,
          StrategyOptions::from_preset(name, 16, 4, 64).precision(precision).loss(InfoNCEOptions().temperature(0.05)));
      std::vector<double> curve;
      for (const auto& batch : batches) {
        curve.push_back(test::step(strategy, batch).loss);
        test::sgd(model, 0.5);
      }
      curves.push_back(curve);
    }
    // Every batch is new: the mean of the last ten steps against ten from
    // step 5 (by then the banks are full and the negatives fixed).
    const auto mean = [](auto begin) { return std::accumulate(begin, begin + 10, 0.0) / 10.0; };
    EXPECT_LT(mean(curves[0].end() - 10), mean(curves[0].begin() + 4)) << name << " did not learn in fp32";
    for (size_t s = 0; s < curves[0].size(); ++s) {
      EXPECT_NEAR(curves[1][s], curves[0][s], 5e-2 * std::abs(curves[0][s])) << name << " step " << s + 1;
    }
  }
}

}  // namespace
}  // namespace contaccum
