#include <contaccum/contaccum.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "train/train_fixture.h"

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

// Writes a tiny training set as BEIR files: every query is judged; queries
// [0, train) train, [train, n) are dev.
void write_beir(const TrainingSet& set, int64_t train, const test::TempDir& dir) {
  std::ofstream corpus(dir / "corpus.jsonl"), queries(dir / "queries.jsonl"), tr(dir / "train.tsv"),
      dev(dir / "dev.tsv");
  for (int64_t i = 0; i < set.passages().size(); ++i) {
    corpus << nlohmann::json{{"_id", set.passages().id(i)}, {"title", ""}, {"text", set.passages().text(i)}}.dump()
           << "\n";
  }
  tr << "query-id\tcorpus-id\tscore\n";
  dev << "query-id\tcorpus-id\tscore\n";
  for (int64_t i = 0; i < set.size(); ++i) {
    queries << nlohmann::json{{"_id", set.queries().id(i)}, {"text", set.queries().text(i)}}.dump() << "\n";
    (i < train ? tr : dev) << set.queries().id(i) << "\t" << set.passages().id(set.positives(i)[0]) << "\t1\n";
  }
}

TrainConfig tiny_config(const test::TempDir& data) {
  auto c = TrainConfig::parse(
      "strategy: contaccum\ntotal_batch: 16\nmicro_batch: 4\nmemory_size: 32\n"
      "hard_negatives: 0\nencoder_options: {shared: true, dim: 32, embedding_dim: 32, dropout: 0.1}\n"
      "tokenizer: {vocab_size: 600}\nsimilarity: cosine\ntemperature: 0.1\n"
      "lr: 0.01\nmax_steps: 60\nwarmup_steps: 5\neval_every: 30\nseed: 7\n");
  c.data.corpus(data / "corpus.jsonl");
  c.data.queries(data / "queries.jsonl");
  c.data.train_qrels(data / "train.tsv");
  c.data.dev_qrels(data / "dev.tsv");
  return c;
}

// The whole `contaccum train` job on a small task: it must learn (dev MRR
// above the untrained model's), write every promised file, and the saved
// model must evaluate to exactly the reported numbers.
TEST(RunTraining, TrainsSavesAndReloads) {
  test::TempDir data, out;
  auto set = test::tiny_training_set(300, /*seed=*/8, /*vocab_words=*/250);
  write_beir(*set, 240, data);
  const auto config = tiny_config(data);

  auto corpus = read_beir_corpus(config.data.corpus());
  auto queries = read_beir_queries(config.data.queries());
  auto dev = read_qrels(config.data.dev_qrels(), queries, corpus);
  auto untrained = build_model(config, &corpus);
  const double before =
      evaluate_dense(untrained.model, untrained.text_encoder(), corpus, queries, dev).metrics.at("mrr@10");

  auto run = run_training(config, out.path.string(), false, ProgressMode::Silent);
  ASSERT_TRUE(run.dev.has_value());
  EXPECT_EQ(run.dev->queries, 60);
  // The shared tower starts from lexical overlap (MRR@10 0.44 untrained,
  // 0.50 after these 60 steps); training must improve on it.
  EXPECT_GT(run.dev->at("mrr@10"), before + 0.03) << "before " << before;
  for (const char* f : {"config.yaml", "vocab.txt", "metrics.jsonl", "eval.json", "model/weights.pt", "model/vocab.txt",
                        "model/config.yaml", "best/weights.pt"}) {
    EXPECT_TRUE(fs::exists(out / f)) << f;
  }
  EXPECT_EQ(CheckpointManager(out / "checkpoints").latest().value(),
            CheckpointManager(out / "checkpoints").path_of(60));

  auto loaded = load_model(out / "model");
  auto again = evaluate_dense(loaded.model, loaded.text_encoder(), corpus, queries, dev).metrics;
  EXPECT_EQ(again.to_json(), run.dev->to_json());
  std::ifstream eval_json(out / "eval.json");
  auto j = nlohmann::json::parse(eval_json);
  EXPECT_DOUBLE_EQ(j["final"]["mrr@10"].get<double>(), run.dev->at("mrr@10"));
  EXPECT_GE(j["best_mrr@10"].get<double>(), run.dev->at("mrr@10"));
}

TEST(RunTraining, ResumeOfAFinishedRunChangesNothing) {
  test::TempDir data, out;
  auto set = test::tiny_training_set(64, 2);
  write_beir(*set, 48, data);
  auto config = tiny_config(data);
  config.trainer.max_steps(4);
  config.trainer.eval_every(0);
  run_training(config, out.path.string(), false, ProgressMode::Silent);
  auto first = load_model(out / "model");
  auto run = run_training(config, out.path.string(), /*resume=*/true, ProgressMode::Silent);
  EXPECT_EQ(run.train.steps, 0);
  auto second = load_model(out / "model");
  for (const auto& p : first.model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), second.model->named_parameters()[p.key()])) << p.key();
  }
}

TEST(RunTraining, ARunOwnsItsOutputDirectory) {
  test::TempDir data, out;
  auto set = test::tiny_training_set(64, 2);
  write_beir(*set, 48, data);
  auto config = tiny_config(data);
  config.trainer.max_steps(2);
  run_training(config, out.path.string(), false, ProgressMode::Silent);
  // A second fresh run into it, a resume with another config: refused, and
  // the first run's files stay.
  EXPECT_THAT(test::error_of([&] { run_training(config, out.path.string(), false, ProgressMode::Silent); }),
              ::testing::AllOf(::testing::HasSubstr("is not empty"), ::testing::HasSubstr("pass --resume")));
  auto other = config;
  other.trainer.optimizer().lr(0.5);
  EXPECT_THAT(test::error_of([&] { run_training(other, out.path.string(), true, ProgressMode::Silent); }),
              ::testing::AllOf(::testing::HasSubstr("it was started with 'lr: 0.01'"),
                               ::testing::HasSubstr("this config says 'lr: 0.5'")));
  auto watched = config;
  watched.trainer.log_every(1);  // how a run is watched may change
  EXPECT_EQ(run_training(watched, out.path.string(), true, ProgressMode::Silent).train.steps, 0);
  EXPECT_TRUE(fs::exists(out / "model/weights.pt"));
}

TEST(RunTraining, BadInputIsFoundBeforeTraining) {
  test::TempDir data, out;
  auto set = test::tiny_training_set(64, 2);
  write_beir(*set, 48, data);
  auto config = tiny_config(data);
  std::ofstream(data / "dev.tsv", std::ios::trunc) << "query-id\tcorpus-id\tscore\n"
                                                   << set->queries().id(50) << "\t" << set->passages().id(0) << "\t0\n";
  EXPECT_THAT(test::error_of([&] { run_training(config, out.path.string(), false, ProgressMode::Silent); }),
              ::testing::HasSubstr("dev.tsv: no query has a relevant passage"));
  std::ofstream(data / "dev.tsv", std::ios::trunc).flush();  // empty
  EXPECT_THAT(test::error_of([&] { run_training(config, out.path.string(), false, ProgressMode::Silent); }),
              ::testing::HasSubstr("dev.tsv: no query has a relevant passage"));
  EXPECT_FALSE(fs::exists(out / "checkpoints"));
  config.engine.memory_size(4000000);
  config.data.dev_qrels("");
  EXPECT_THAT(test::error_of([&] { run_training(config, out.path.string(), false, ProgressMode::Silent); }),
              ::testing::AllOf(::testing::HasSubstr("config key 'memory_size' = 4000000 needs about"),
                               ::testing::HasSubstr("lower memory_size")));
}

// Saved models carry CRC-32s of their files, and every tensor's shape is
// checked against the config: damage and mixed files are named, not used.
TEST(LoadModel, RefusesDamagedOrMismatchedFiles) {
  test::TempDir data, out;
  auto set = test::tiny_training_set(64, 2);
  write_beir(*set, 48, data);
  auto config = tiny_config(data);
  config.trainer.max_steps(1);
  config.data.dev_qrels("");
  run_training(config, out.path.string(), false, ProgressMode::Silent);
  const auto model = out / "model";
  load_model(model);  // intact
  const auto original_weights = test::slurp(model + "/weights.pt");
  const auto original_vocab = test::slurp(model + "/vocab.txt");
  auto put = [](const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  };

  auto flipped = original_weights;
  ZipRecord largest;
  for (const auto& r : verify_zip_checksums(model + "/weights.pt")) largest = r.size > largest.size ? r : largest;
  flipped[largest.data_offset + largest.size / 3] ^= 0x04;
  put(model + "/weights.pt", flipped);
  EXPECT_THAT(test::error_of([&] { load_model(model); }),
              ::testing::AllOf(::testing::HasSubstr("weights.pt changed after the model was saved")));
  put(model + "/weights.pt", original_weights);

  // Cut short at a line: a valid, smaller vocabulary.
  put(model + "/vocab.txt", original_vocab.substr(0, original_vocab.rfind('\n', original_vocab.size() / 2) + 1));
  EXPECT_THAT(test::error_of([&] { load_model(model); }), ::testing::HasSubstr("vocab.txt changed after"));
  // Without the manifest the shapes still give it away.
  fs::remove(model + "/checksums.json");
  EXPECT_THAT(test::error_of([&] { load_model(model); }),
              ::testing::AllOf(::testing::HasSubstr("weights.pt: 'encoder.embedding.weight' is [")));
  put(model + "/vocab.txt", original_vocab);
  // And the zip's own CRC-32s still catch a flipped byte.
  put(model + "/weights.pt", flipped);
  EXPECT_THAT(test::error_of([&] { load_model(model); }), ::testing::HasSubstr("damaged"));
  put(model + "/weights.pt", original_weights);
  auto cfg = test::slurp(model + "/config.yaml");
  const auto at = cfg.find("encoder_options.embedding_dim: 32");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, std::string("encoder_options.embedding_dim: 32").size(), "encoder_options.embedding_dim: 16");
  put(model + "/config.yaml", cfg);
  EXPECT_THAT(test::error_of([&] { load_model(model); }), ::testing::HasSubstr("but this model's is"));
}

TEST(RunTraining, MissingDataKeysAreNamed) {
  test::TempDir out;
  auto config = TrainConfig::parse("");
  EXPECT_THAT([&] { run_training(config, out.path.string()); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("config key 'data.corpus' is required")));
}

TEST(BuildModel, TiedInitStartsBothTowersFromTheSameWeights) {
  test::TempDir dir;
  const auto vocab = (dir.path / "vocab.txt").string();
  std::ofstream(vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nalpha\nbeta\n";
  for (const std::string encoder : {"bag_of_embeddings", "transformer"}) {
    auto config = TrainConfig::parse("encoder: " + encoder +
                                     "\nencoder_options: {tied_init: true, dim: 8, embedding_dim: 8, hidden_size: 8, "
                                     "layers: 1, heads: 2, intermediate_size: 16}\ntokenizer: {vocab: " +
                                     vocab + "}\n");
    auto model = build_model(config, nullptr).model;
    const auto q = model->query_encoder()->named_parameters(), p = model->passage_encoder()->named_parameters();
    ASSERT_EQ(q.size(), p.size());
    for (const auto& item : q) {
      EXPECT_TRUE(torch::equal(item.value(), p[item.key()])) << encoder << " " << item.key();
      EXPECT_NE(item.value().data_ptr(), p[item.key()].data_ptr()) << "towers must not share storage";
    }
    // Without it the towers are drawn independently.
    config.model.tied_init(false);
    auto untied = build_model(config, nullptr).model;
    EXPECT_FALSE(torch::equal(untied->query_encoder()->parameters()[0], untied->passage_encoder()->parameters()[0]));
  }
}

TEST(BuildModel, PoolingChoosesTheBagOfEmbeddingsPooling) {
  test::TempDir dir;
  const auto vocab = (dir.path / "vocab.txt").string();
  std::ofstream(vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nalpha\nbeta\n";
  for (const std::string pooling : {"", "mean", "attention"}) {
    auto config = TrainConfig::parse("encoder_options: {dim: 8, embedding_dim: 8}\ntokenizer: {vocab: " + vocab + "}\n",
                                     {"encoder_options.pooling=" + pooling});
    auto model = build_model(config, nullptr).model;
    for (const auto& tower : {model->query_encoder(), model->passage_encoder()}) {
      auto bag = std::dynamic_pointer_cast<BagOfEmbeddingsEncoderImpl>(tower);
      ASSERT_TRUE(bag) << pooling;
      EXPECT_EQ(bag->options().pooling() == BagPooling::Attention, pooling == "attention") << pooling;
      EXPECT_EQ(bag->named_parameters().contains("token_logit.weight"), pooling == "attention") << pooling;
    }
  }
}

TEST(LoadModel, NamesWhatIsMissing) {
  test::TempDir dir;
  EXPECT_THAT([&] { load_model(dir.path.string()); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("is not a saved contaccum model")));
}

}  // namespace
}  // namespace contaccum
