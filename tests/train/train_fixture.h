#pragma once
// A tiny retrieval task held in memory, for trainer and pipeline tests.

#include <contaccum/contaccum.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace contaccum {
namespace test {

/// `n` passages of 12 random words out of `vocab_words`; each query is 4 of
/// its passage's words. Example i: query i, positive i, hard negatives i+1,
/// i+2 (mod n).
inline std::shared_ptr<TrainingSet> tiny_training_set(int64_t n, uint64_t seed = 3, int64_t vocab_words = 200) {
  std::mt19937_64 rng(seed);
  auto corpus = std::make_shared<TextTable>();
  auto queries = std::make_shared<TextTable>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::string> words;
    for (int w = 0; w < 12; ++w) words.push_back("w" + std::to_string(rng() % vocab_words));
    std::string passage, query;
    for (const auto& w : words) passage += (passage.empty() ? "" : " ") + w;
    for (int w = 0; w < 4; ++w) query += (query.empty() ? "" : " ") + words[rng() % words.size()];
    corpus->add("d" + std::to_string(i), "", passage);
    queries->add("q" + std::to_string(i), "", query);
  }
  auto set = std::make_shared<TrainingSet>(queries, corpus);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> hard{(i + 1) % n, (i + 2) % n};
    set->add(i, {i}, hard);
  }
  return set;
}

/// Word -> id by hashing (ids 1..vocab-1; 0 pads): no vocabulary to build.
inline TextEncoderFn hashing_tokenizer(int64_t vocab) {
  return [vocab](const std::vector<std::string>& texts, int64_t max_length) {
    std::vector<std::vector<int64_t>> rows;
    int64_t width = 1;
    for (const auto& t : texts) {
      std::vector<int64_t> ids;
      size_t start = 0;
      while (start < t.size() && static_cast<int64_t>(ids.size()) < max_length) {
        size_t end = t.find(' ', start);
        if (end == std::string::npos) end = t.size();
        if (end > start) {
          ids.push_back(1 + static_cast<int64_t>(std::hash<std::string>{}(t.substr(start, end - start)) %
                                                 static_cast<size_t>(vocab - 1)));
        }
        start = end + 1;
      }
      width = std::max<int64_t>(width, static_cast<int64_t>(ids.size()));
      rows.push_back(std::move(ids));
    }
    EncoderInput in;
    in.input_ids = torch::zeros({static_cast<int64_t>(texts.size()), width}, torch::kLong);
    in.attention_mask = torch::zeros_like(in.input_ids);
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t c = 0; c < rows[r].size(); ++c) {
        in.input_ids[static_cast<int64_t>(r)][static_cast<int64_t>(c)] = rows[r][c];
        in.attention_mask[static_cast<int64_t>(r)][static_cast<int64_t>(c)] = 1;
      }
    }
    return in;
  };
}

/// A fresh temporary directory, removed with the object.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("contaccum-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// Vocabulary of `tiny_dual_encoder` (use `hashing_tokenizer(kTinyVocab)`).
constexpr int64_t kTinyVocab = 101;

/// Two bag-of-embeddings towers (12 wide, dropout 0.2), seeded.
inline DualEncoder tiny_dual_encoder(uint64_t seed) {
  torch::manual_seed(seed);
  auto tower = [] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(kTinyVocab, 16).embedding_dim(12).dropout(0.2)).ptr();
  };
  return DualEncoder(tower(), tower());
}

/// 8 steps, checkpoints every 4, 2 hard negatives, silent.
inline TrainerOptions tiny_trainer_options(const std::string& dir) {
  return TrainerOptions()
      .optimizer(AdamWSetup().lr(1e-2))
      .warmup_steps(2)
      .max_steps(8)
      .seed(5)
      .hard_negatives(2)
      .output_dir(dir)
      .checkpoint_every(4)
      .progress(ProgressMode::Silent);
}

/// Writes a `contaccum train` config for the generated data set in `data`
/// (ContAccum 16 / 4, banks of 36, a 32-wide bag-of-embeddings, seed 11), of
/// `steps` steps and a checkpoint every `checkpoint_every`: the small run the
/// CLI tests interrupt and resume.
inline void write_small_cli_config(const std::filesystem::path& config, const std::filesystem::path& data,
                                   int64_t steps, int64_t checkpoint_every) {
  std::ofstream(config) << "data: {corpus: " << (data / "corpus.jsonl").string()
                        << ", queries: " << (data / "queries.jsonl").string()
                        << ", train_qrels: " << (data / "qrels/train.tsv").string() << "}\n"
                        << "strategy: contaccum\ntotal_batch: 16\nmicro_batch: 4\nmemory_size: 36\nhard_negatives: 0\n"
                           "encoder_options: {dim: 32, embedding_dim: 32, dropout: 0.1}\ntokenizer: {vocab_size: 400}\n"
                           "lr: 0.01\nmax_steps: "
                        << steps << "\nwarmup_steps: 4\ncheckpoint_every: " << checkpoint_every
                        << "\nkeep_checkpoints: 2\nseed: 11\n";
}

/// Every line of a JSON-lines file, parsed.
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

/// Runs `fn(state)` at the end of every step.
struct OnStepEnd : TrainerCallback {
  std::function<void(TrainerState&)> fn;
  explicit OnStepEnd(std::function<void(TrainerState&)> f) : fn(std::move(f)) {}
  void on_step_end(TrainerState& state, const StepRecord&) override { fn(state); }
};

}  // namespace test
}  // namespace contaccum
