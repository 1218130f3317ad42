#include <contaccum/train/train_config.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "train/train_fixture.h"

#include <fstream>

using ::testing::HasSubstr;

namespace contaccum {
namespace {

using test::error_of;

TEST(TrainConfig, ParsesNestedKeysAndOverrides) {
  const auto c = TrainConfig::parse(R"(
strategy: grad_cache
total_batch: 64
micro_batch: 16
data:
  corpus: c.jsonl
  queries: q.jsonl
encoder: transformer
encoder_options: {layers: 2, heads: 2, hidden_size: 64, pooling: mean}
lr: 3e-4
)",
                                    {"total_batch=32", "similarity=cosine", "encoder_options.dropout=0"});
  EXPECT_EQ(c.strategy, "grad_cache");
  EXPECT_EQ(c.engine.total_batch(), 32);
  EXPECT_EQ(c.engine.micro_batch(), 16);
  EXPECT_EQ(c.data.corpus(), "c.jsonl");
  EXPECT_EQ(c.data.queries(), "q.jsonl");
  EXPECT_EQ(c.model.encoder(), "transformer");
  EXPECT_EQ(c.model.encoder_options().integer("layers"), 2);
  EXPECT_EQ(c.model.encoder_options().text("pooling"), "mean");
  EXPECT_DOUBLE_EQ(c.model.encoder_options().number("dropout"), 0.0);
  EXPECT_DOUBLE_EQ(c.trainer.optimizer().lr(), 3e-4);
  EXPECT_EQ(c.model.similarity(), Similarity::Cosine);
  EXPECT_EQ(c.engine.memory_size(), 1024);  // default kept
}

TEST(TrainConfig, YamlRoundTripKeepsEveryValue) {
  auto c = TrainConfig::parse(
      "strategy: full_batch\ntotal_batch: 12\nmicro_batch: 5\ntemperature: 0.0123456789\n"
      "data: {corpus: 'a b: c.jsonl'}\nquery_bank: false\n");
  auto again = TrainConfig::parse(c.to_yaml());
  EXPECT_EQ(again.to_yaml(), c.to_yaml());
  EXPECT_EQ(again.data.corpus(), "a b: c.jsonl");
  EXPECT_DOUBLE_EQ(again.engine.loss().temperature(), 0.0123456789);
  EXPECT_FALSE(again.engine.query_bank());
  const std::string yaml = "\n" + c.to_yaml();
  for (const auto& key : TrainConfig::keys()) EXPECT_NE(yaml.find("\n" + key + ": "), std::string::npos) << key;
}

TEST(TrainConfig, RejectsUnknownKeysAndBadValuesNamingThem) {
  EXPECT_THAT(error_of([] { TrainConfig::parse("totl_batch: 3\n", {}, "cfg.yaml"); }),
              HasSubstr("cfg.yaml: unknown config key 'totl_batch'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("data: {corpse: x}\n"); }),
              HasSubstr("unknown config key 'data.corpse'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("total_batch: many\n"); }),
              HasSubstr("config key 'total_batch' must be an integer, got 'many'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("lr: .nan\n"); }), HasSubstr("'lr' must be a finite number"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("query_bank: maybe\n"); }),
              HasSubstr("'query_bank' must be true or false, got 'maybe'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("strategy: magic\n"); }),
              HasSubstr("config key 'strategy' must be one of full_batch, grad_accum"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("encoder_options: {pooling: cls}\n"); }),
              HasSubstr("config key 'encoder_options.pooling' must be one of mean, attention; got 'cls'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("encoder: transformer\nencoder_options: {pooling: attention}\n"); }),
              HasSubstr("config key 'encoder_options.pooling' must be one of cls, mean; got 'attention'"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("total_batch: 100\nmicro_batch: 8\n"); }),
              HasSubstr("'micro_batch' (8) must divide total_batch (100)"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("temperature: 0\n"); }), HasSubstr("'temperature' must be > 0, got 0"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("total_batch: [1, 2]\n"); }),
              HasSubstr("'total_batch' must be a single value"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("a: [\n", {}, "broken.yaml"); }),
              HasSubstr("broken.yaml: not valid YAML"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("", {"lr"}); }), HasSubstr("--set 'lr' must be key=value"));
  EXPECT_THAT(error_of([] { TrainConfig::parse("", {"epoch=3"}); }), HasSubstr("--set: unknown config key 'epoch'"));
}

TEST(TrainConfig, LoadNamesTheFile) {
  test::TempDir dir;
  std::ofstream(dir / "c.yaml") << "memory_size: -4\n";
  EXPECT_THAT(error_of([&] { TrainConfig::load(dir / "c.yaml"); }),
              HasSubstr("c.yaml: config key 'memory_size' must be >= 0, got -4"));
  EXPECT_THAT(error_of([&] { TrainConfig::load(dir / "missing.yaml"); }), HasSubstr("cannot open config file"));
}

// Errors say where the value was given: the file's line, or --set (a bad
// --set value was blamed on the config file).
TEST(TrainConfig, ErrorsNameTheLineOrTheSetOption) {
  test::TempDir dir;
  std::ofstream(dir / "c.yaml") << "lr: 0.001\n\nmemory_size: -4\nlrr: 3\n";
  EXPECT_THAT(error_of([&] { TrainConfig::load(dir / "c.yaml"); }),
              HasSubstr("c.yaml: unknown config key 'lrr' (see `contaccum train --list-keys`) (line 4)"));
  std::ofstream(dir / "d.yaml") << "lr: 0.001\n\nmemory_size: -4\n";
  EXPECT_THAT(error_of([&] { TrainConfig::load(dir / "d.yaml"); }),
              HasSubstr("d.yaml: config key 'memory_size' must be >= 0, got -4 (line 3)"));
  std::ofstream(dir / "e.yaml") << "lr: 0.001\n";
  const auto set = error_of([&] { TrainConfig::load(dir / "e.yaml", {"max_steps=-5"}); });
  EXPECT_THAT(set, HasSubstr("--set max_steps=-5: config key 'max_steps' must be >= 0, got -5"));
  EXPECT_THAT(set, ::testing::Not(HasSubstr("e.yaml")));
  // Printed in the shortest form that reads back exactly.
  const auto yaml = TrainConfig().to_yaml();
  EXPECT_THAT(yaml, HasSubstr("\nlr: 2e-05\n"));
  EXPECT_THAT(yaml, HasSubstr("\nencoder_options.dropout: 0.1\n"));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// Every shipped config must load (a typo in a key would otherwise only show
// when a user runs it).
TEST(TrainConfig, ShippedExampleConfigsLoad) {
  int found = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(CONTACCUM_TEST_DIR "/../examples")) {
    if (e.path().extension() != ".yaml") continue;
    ++found;
    EXPECT_NO_THROW(TrainConfig::load(e.path().string())) << e.path();
  }
  EXPECT_GE(found, 5);
}

// Each reproduction configuration is base.yaml plus one `key=value` per line
// of its .set file (examples/reproduce/run.sh); every one must load.
TEST(TrainConfig, ReproductionConfigurationsLoad) {
  const std::filesystem::path root = CONTACCUM_TEST_DIR "/../examples/reproduce";
  int found = 0;
  for (const char* folder : {"methods", "extra", "staleness"}) {
    for (const auto& e : std::filesystem::directory_iterator(root / folder)) {
      if (e.path().extension() != ".set") continue;
      ++found;
      std::vector<std::string> overrides;
      std::ifstream in(e.path());
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) overrides.push_back(line);
      EXPECT_FALSE(overrides.empty()) << e.path();
      EXPECT_NO_THROW(TrainConfig::load((root / "base.yaml").string(), overrides)) << e.path();
    }
  }
  EXPECT_GE(found, 13);
}

TEST(TrainConfig, BankEncoderAndStalenessKeys) {
  const auto c =
      TrainConfig::parse("bank_encoder: momentum\nmomentum: 0.9\nstaleness_every: 10\nstaleness_sample: 64\n");
  EXPECT_EQ(c.engine.bank_encoder(), BankEncoder::Momentum);
  EXPECT_EQ(c.engine.momentum(), 0.9);
  EXPECT_EQ(c.trainer.staleness_every(), 10);
  EXPECT_EQ(c.staleness_sample, 64);
  EXPECT_EQ(TrainConfig::parse(c.to_yaml()).to_yaml(), c.to_yaml());
  using ::testing::HasSubstr;
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("bank_encoder: ema\n"); }), HasSubstr("bank_encoder"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("bank_encoder: momentum\nmomentum: 1\n"); }),
              HasSubstr("config key 'momentum' must be in [0, 1), got 1"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("strategy: grad_accum\nbank_encoder: momentum\n"); }),
              HasSubstr("config key 'bank_encoder' = momentum needs banks (strategy grad_accum"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("memory_size: 0\nstaleness_every: 5\n"); }),
              HasSubstr("config key 'staleness_every' = 5 needs banks"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("staleness_sample: 0\n"); }),
              HasSubstr("config key 'staleness_sample' must be > 0, got 0"));
}

// yaml-cpp keeps the last of two equal keys silently; a config refuses them.
TEST(TrainConfig, RefusesAKeyGivenTwiceAndANegativeClip) {
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("lr: 0.1\nseed: 3\nlr: 0.2\n", {}, "a.yaml"); }),
              ::testing::HasSubstr("a.yaml:3: config key 'lr' is given twice (first on line 1)"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("data:\n  corpus: a\ndata:\n  corpus: b\n", {}, "b.yaml"); }),
              ::testing::HasSubstr("config key 'data.corpus' is given twice"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("max_grad_norm: -1\n"); }),
              ::testing::HasSubstr("config key 'max_grad_norm' must be >= 0 (0 disables clipping), got -1"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("non_finite: ignore\n"); }), ::testing::HasSubstr("non_finite"));
  EXPECT_EQ(TrainConfig::parse("final_lr_ratio: 0.45\n").trainer.final_lr_ratio(), 0.45);
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("final_lr_ratio: 2\n"); }),
              ::testing::HasSubstr("config key 'final_lr_ratio' must be in [0, 1], got 2"));
  EXPECT_EQ(TrainConfig::parse("\xEF\xBB\xBFlr: 0.5\n").trainer.optimizer().lr(), 0.5)
      << "a byte order mark is not part of the key";
}

TEST(TrainConfig, OptimizerKeys) {
  const auto defaults = TrainConfig::parse("");
  EXPECT_TRUE(defaults.trainer.optimizer().fused());
  EXPECT_FALSE(defaults.trainer.optimizer().row_sparse_embeddings());
  const auto sparse = TrainConfig::parse("row_sparse_embeddings: true\n");
  EXPECT_TRUE(sparse.trainer.optimizer().row_sparse_embeddings());
  EXPECT_FALSE(TrainConfig::parse("fused_adamw: false\n").trainer.optimizer().fused());
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("fused_adamw: false\nrow_sparse_embeddings: true\n"); }),
              ::testing::HasSubstr("config key 'row_sparse_embeddings' needs fused_adamw: true"));
}

}  // namespace
}  // namespace contaccum
