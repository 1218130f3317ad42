// Fuzzes the checkpoint loader: verify_zip_checksums on the bytes, then (only
// when every CRC-32 matches, as Trainer::load_checkpoint does) LibTorch's
// InputArchive::load_from and Trainer::load into a fresh tiny trainer.
//
// With CONTACCUM_FUZZ_WRITE_CHECKPOINT=PATH set, the target instead trains
// that tiny trainer for 2 steps, writes its checkpoint to PATH (a seed) and
// exits.
#include "fuzz_common.h"

#include <contaccum/contaccum.h>
#include <contaccum/io/zip_checksums.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace contaccum;

constexpr int64_t kVocab = 17;

// 8 examples: query i, positive i, hard negative i+1.
std::shared_ptr<const TrainingSet> tiny_set() {
  static const auto set = [] {
    auto corpus = std::make_shared<TextTable>();
    auto queries = std::make_shared<TextTable>();
    for (int i = 0; i < 8; ++i) {
      corpus->add("d" + std::to_string(i), "", "w" + std::to_string(i) + " w" + std::to_string(i + 1));
      queries->add("q" + std::to_string(i), "", "w" + std::to_string(i));
    }
    auto s = std::make_shared<TrainingSet>(queries, corpus);
    for (int64_t i = 0; i < 8; ++i) s->add(i, {i}, {(i + 1) % 8});
    return std::shared_ptr<const TrainingSet>(s);
  }();
  return set;
}

// Word -> id by hashing (ids 1..kVocab-1; 0 pads).
EncoderInput hash_tokens(const std::vector<std::string>& texts, int64_t max_length) {
  const auto n = static_cast<int64_t>(texts.size());
  EncoderInput in;
  in.input_ids = torch::zeros({n, max_length}, torch::kLong);
  in.attention_mask = torch::zeros({n, max_length}, torch::kLong);
  for (int64_t r = 0; r < n; ++r) {
    int64_t c = 0;
    size_t start = 0;
    const auto& t = texts[static_cast<size_t>(r)];
    while (start < t.size() && c < max_length) {
      auto end = t.find(' ', start);
      if (end == std::string::npos) end = t.size();
      in.input_ids[r][c] =
          1 + static_cast<int64_t>(std::hash<std::string>{}(t.substr(start, end - start)) % (kVocab - 1));
      in.attention_mask[r][c] = 1;
      ++c;
      start = end + 1;
    }
  }
  return in;
}

std::unique_ptr<Trainer> tiny_trainer() {
  torch::manual_seed(7);
  auto tower = [] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(kVocab, 4).embedding_dim(4).dropout(0.0)).ptr();
  };
  DualEncoder model(tower(), tower());
  Collator collator(hash_tokens, CollatorOptions().query_max_length(4).passage_max_length(4));
  return std::make_unique<Trainer>(model, StrategyOptions::contaccum(4, 2, 8), tiny_set(), collator,
                                   TrainerOptions().max_steps(2).hard_negatives(1).progress(ProgressMode::Silent));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  contaccum::set_compute_threads(1);
  if (const char* out = std::getenv("CONTACCUM_FUZZ_WRITE_CHECKPOINT"); out && *out) {
    auto trainer = tiny_trainer();
    trainer->train();
    torch::serialize::OutputArchive archive;
    trainer->save(archive);
    archive.save_to(std::string(out));
    std::fprintf(stderr, "wrote %s\n", out);
    std::exit(0);
  }
  // LibTorch sets up its TorchScript type parser and unpickler on the first
  // load, which takes seconds under ASan with full malloc stacks: pay it
  // here, with a valid checkpoint, not inside the first valid input's
  // timeout (it made a 10-minute run report a timeout on the seed).
  auto trainer = tiny_trainer();
  torch::serialize::OutputArchive archive;
  trainer->save(archive);
  std::ostringstream buffer;
  archive.save_to(buffer);
  const auto bytes = buffer.str();
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    verify_zip_checksums(data, size, "fuzz-checkpoint");
  } catch (const std::exception& e) {
    contaccum_fuzz::rejected("verify_zip_checksums", e);
    return 0;  // damaged: Trainer::load_checkpoint stops here too
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(reinterpret_cast<const char*>(data), size, torch::kCPU);
  } catch (const std::exception& e) {
    contaccum_fuzz::rejected("InputArchive::load_from", e);
    return 0;
  }
  try {
    auto trainer = tiny_trainer();
    trainer->load(archive);
  } catch (const std::exception& e) {
    contaccum_fuzz::rejected("Trainer::load", e);
  }
  return 0;
}
