// Building a model from a config, and the model directory `save_model`
// writes and `load_model` reads (with its checksums).
#include "contaccum/train/pipeline.h"

#include "contaccum/encoders/registry.h"
#include "contaccum/io/zip_checksums.h"
#include "contaccum/text/vocab_builder.h"
#include "contaccum/train/checkpoint.h"
#include "contaccum/train/finite.h"

#include "trained_model_internal.h"

#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace contaccum {

std::string detail::vocab_text(const Vocabulary& vocab) {
  std::string out;
  for (const auto& t : vocab.tokens()) out += t + "\n";
  return out;
}

namespace {

using detail::vocab_text;

std::shared_ptr<EncoderModule> make_tower(const TrainConfig& c, int64_t vocab_size, int64_t pad_id) {
  TowerContext context;
  context.vocab_size = vocab_size;
  context.pad_id = pad_id;
  context.max_positions = std::max<int64_t>(512, c.lengths.passage_max_length());
  return EncoderRegistry::global().at(c.model.encoder()).make_tower(c.model.encoder_options(), context);
}

DualEncoder make_dual_encoder(const TrainConfig& c, const WordPieceTokenizer& tokenizer) {
  const auto options = DualEncoderOptions().similarity(c.model.similarity());
  const int64_t vocab = tokenizer.vocab().size();
  if (c.model.shared()) return DualEncoder(make_tower(c, vocab, tokenizer.pad_id()), options);
  auto query_tower = make_tower(c, vocab, tokenizer.pad_id());
  auto passage_tower = make_tower(c, vocab, tokenizer.pad_id());
  if (c.model.tied_init()) {
    torch::NoGradGuard no_grad;
    const auto from = query_tower->named_parameters(), from_buffers = query_tower->named_buffers();
    for (auto& p : passage_tower->named_parameters()) p.value().copy_(from[p.key()]);
    for (auto& b : passage_tower->named_buffers()) b.value().copy_(from_buffers[b.key()]);
  }
  return DualEncoder(query_tower, passage_tower, options);
}

WordPieceTokenizerOptions tokenizer_options(const TrainConfig& c) {
  auto o =
      WordPieceTokenizerOptions().max_length(std::max(c.lengths.query_max_length(), c.lengths.passage_max_length()));
  o.basic().lower_case(c.tokenizer.lower_case());
  return o;
}

// The files `load_model` reads, listed with their size and CRC-32 in
// checksums.json, written last: a model directory whose files were changed,
// cut short or mixed with another model's is refused by name.
const char* const kModelFiles[] = {"config.yaml", "vocab.txt", "weights.pt"};

nlohmann::json file_checksum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "cannot read ", path);
  std::vector<char> block(1 << 20);
  uint32_t crc = 0;
  uint64_t bytes = 0;
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto n = static_cast<uint64_t>(in.gcount());
    crc = crc32_of(block.data(), n, crc);
    bytes += n;
  }
  return {{"bytes", bytes}, {"crc32", crc}};
}

void write_model_checksums(const std::string& directory) {
  nlohmann::json files;
  for (const char* f : kModelFiles) files[f] = file_checksum((fs::path(directory) / f).string());
  write_file_atomically((fs::path(directory) / "checksums.json").string(),
                        nlohmann::json({{"format", 1}, {"files", files}}).dump(2) + "\n");
}

void verify_model_checksums(const std::string& directory) {
  const auto path = (fs::path(directory) / "checksums.json").string();
  if (!fs::exists(path)) {
    spdlog::warn("{}: no checksums.json (a model saved by an older contaccum): its files are not verified", directory);
    return;
  }
  std::ifstream in(path);
  const auto manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  TORCH_CHECK(manifest.is_object() && manifest.contains("files") && manifest["files"].is_object(), path,
              ": not a checksums file of a contaccum model");
  for (const char* f : kModelFiles) {
    TORCH_CHECK(manifest["files"].contains(f), path, ": lists no checksum for ", f);
    const auto want = manifest["files"][f];
    const auto got = file_checksum((fs::path(directory) / f).string());
    TORCH_CHECK(got == want, (fs::path(directory) / f).string(), " changed after the model was saved (",
                got["bytes"].get<uint64_t>(), " bytes, CRC-32 ", got["crc32"].get<uint32_t>(),
                "; saved: ", want.value("bytes", uint64_t{0}), " bytes, CRC-32 ", want.value("crc32", uint32_t{0}),
                "): the model directory is damaged or mixes files of different models");
  }
}

}  // namespace

TextEncoderFn TrainedModel::text_encoder() const {
  auto tok = tokenizer;
  return
      [tok](const std::vector<std::string>& texts, int64_t max_length) { return tok->encode_batch(texts, max_length); };
}

TrainedModel build_model(const TrainConfig& config, const TextTable* corpus) {
  config.validate();
  torch::manual_seed(config.trainer.seed());
  TrainedModel out;
  out.config = config;
  Vocabulary vocab;
  if (!config.tokenizer.vocab().empty()) {
    vocab = Vocabulary::load(config.tokenizer.vocab());
  } else if (const auto pretrained = config.model.pretrained_directory(); !pretrained.empty()) {
    vocab = Vocabulary::load((fs::path(pretrained) / "vocab.txt").string());
  } else {
    TORCH_CHECK(corpus != nullptr && !corpus->empty(),
                "build_model: no tokenizer.vocab given and no corpus to train a vocabulary on");
    auto trainer_options = WordPieceTrainerOptions(config.tokenizer.vocab_size());
    trainer_options.basic().lower_case(config.tokenizer.lower_case());
    WordPieceTrainer trainer(trainer_options);
    for (int64_t i = 0; i < corpus->size(); ++i) trainer.add(corpus->full_text(i));
    vocab = trainer.finish();
  }
  out.tokenizer = std::make_shared<const WordPieceTokenizer>(std::move(vocab), tokenizer_options(config));
  out.model = make_dual_encoder(config, *out.tokenizer);
  return out;
}

void save_model(const TrainedModel& m, const std::string& directory) {
  const auto bad = first_non_finite(*m.model, "parameter ");
  TORCH_CHECK(bad.empty(), "save_model: refusing to save ", directory, ": ", bad, " holds a NaN or an infinity");
  fs::create_directories(directory);
  // A re-save must not leave a manifest that describes the old files.
  fs::remove(fs::path(directory) / "checksums.json");
  write_file_atomically((fs::path(directory) / "config.yaml").string(), m.config.to_yaml());
  write_file_atomically((fs::path(directory) / "vocab.txt").string(), vocab_text(m.tokenizer->vocab()));
  torch::serialize::OutputArchive archive;
  m.model->save(archive);
  save_archive_atomically(archive, (fs::path(directory) / "weights.pt").string());
  if (const auto& export_hf = EncoderRegistry::global().at(m.config.model.encoder()).export_hf) {
    export_hf(*m.model->query_encoder(), (fs::path(directory) / "query_encoder").string());
    if (!m.model->shared()) export_hf(*m.model->passage_encoder(), (fs::path(directory) / "passage_encoder").string());
  }
  write_model_checksums(directory);
}

TrainedModel load_model(const std::string& directory) {
  const auto config_path = (fs::path(directory) / "config.yaml").string();
  const auto vocab_path = (fs::path(directory) / "vocab.txt").string();
  const auto weights_path = (fs::path(directory) / "weights.pt").string();
  for (const auto& p : {config_path, vocab_path, weights_path}) {
    if (fs::exists(p)) continue;
    // A training run's directory holds its models in model/ and best/.
    std::string inside;
    for (const char* sub : {"model", "best"}) {
      if (fs::exists(fs::path(directory) / sub / "weights.pt")) {
        inside += (inside.empty() ? "" : " or ") + (fs::path(directory) / sub).string();
      }
    }
    TORCH_CHECK(false, "load_model: ", directory, " is not a saved contaccum model (no ", p, ")",
                inside.empty() ? "" : "; it is a training run's directory: give " + inside);
  }
  verify_model_checksums(directory);
  verify_zip_checksums(weights_path);
  auto config = TrainConfig::load(config_path);
  config.tokenizer.vocab(vocab_path);
  // The weights file has every tensor: no pretrained start.
  if (const auto& key = EncoderRegistry::global().at(config.model.encoder()).pretrained_key; !key.empty()) {
    config.model.encoder_options().set(key, std::string());
  }
  TrainedModel out = build_model(config, nullptr);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(weights_path);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "load_model: cannot read ", weights_path, ": ", e.what_without_backtrace());
  }
  load_module_checked(*out.model, archive, weights_path);
  return out;
}

}  // namespace contaccum
