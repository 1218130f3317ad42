#include "contaccum/train/pipeline.h"

#include "contaccum/core/stopwatch.h"
#include "contaccum/data/readers.h"
#include "contaccum/encoders/registry.h"
#include "contaccum/eval/evaluate.h"
#include "contaccum/io/zip_checksums.h"
#include "contaccum/text/vocab_builder.h"
#include "contaccum/train/checkpoint.h"
#include "contaccum/train/finite.h"
#include "contaccum/train/run_directory.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

std::string vocab_text(const Vocabulary& vocab) {
  std::string out;
  for (const auto& t : vocab.tokens()) out += t + "\n";
  return out;
}

std::shared_ptr<EncoderModule> make_tower(const TrainConfig& c, int64_t vocab_size, int64_t pad_id) {
  TowerContext context;
  context.vocab_size = vocab_size;
  context.pad_id = pad_id;
  context.max_positions = std::max<int64_t>(512, c.passage_max_length);
  return EncoderRegistry::global().at(c.encoder).make_tower(c.encoder_options, context);
}

DualEncoder make_dual_encoder(const TrainConfig& c, const WordPieceTokenizer& tokenizer) {
  const auto options = DualEncoderOptions().normalize(c.similarity == "cosine");
  const int64_t vocab = tokenizer.vocab().size();
  if (c.encoder_shared) return DualEncoder(make_tower(c, vocab, tokenizer.pad_id()), options);
  auto query_tower = make_tower(c, vocab, tokenizer.pad_id());
  auto passage_tower = make_tower(c, vocab, tokenizer.pad_id());
  if (c.encoder_tied_init) {
    torch::NoGradGuard no_grad;
    const auto from = query_tower->named_parameters(), from_buffers = query_tower->named_buffers();
    for (auto& p : passage_tower->named_parameters()) p.value().copy_(from[p.key()]);
    for (auto& b : passage_tower->named_buffers()) b.value().copy_(from_buffers[b.key()]);
  }
  return DualEncoder(query_tower, passage_tower, options);
}

WordPieceTokenizerOptions tokenizer_options(const TrainConfig& c) {
  auto o = WordPieceTokenizerOptions().max_length(std::max(c.query_max_length, c.passage_max_length));
  o.basic().lower_case(c.tokenizer_lower_case);
  return o;
}

StrategyOptions strategy_options(const TrainConfig& c) {
  auto s = StrategyOptions::from_preset(c.strategy, c.total_batch, c.micro_batch, c.memory_size);
  s.query_bank(c.query_bank)
      .passage_bank(c.passage_bank)
      .bank_hard_negatives(c.bank_hard_negatives)
      .clear_banks_after_step(c.clear_banks_after_step)
      .loss(InfoNCEOptions()
                .similarity(c.similarity == "cosine" ? Similarity::Cosine : Similarity::Dot)
                .temperature(c.temperature));
  s.validate();
  return s;
}

// The pretrained directory the chosen encoder starts from ("" for none).
std::string pretrained_directory(const TrainConfig& c) {
  const auto& key = EncoderRegistry::global().at(c.encoder).pretrained_key;
  return key.empty() ? "" : c.encoder_options.text(key);
}

void require(const std::string& value, const char* key) {
  TORCH_CHECK(!value.empty(), "config key '", key, "' is required");
}

nlohmann::json to_json(const RetrievalMetrics& m) { return nlohmann::json::parse(m.to_json()); }

// Memory the kernel could hand out now (MemAvailable counts reclaimable
// page cache, unlike free pages); 0 when unknown.
double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  while (in >> key >> kib) {
    if (key == "MemAvailable:") return kib * 1024.0;
    in.ignore(256, '\n');
  }
  return static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// Bytes the banks, their score cache and the loss over them take: refused
// up front, naming the key, rather than failing deep in the allocator.
void check_bank_memory(const TrainConfig& c) {
  if (!StrategyOptions::preset_has_banks(c.strategy) || c.memory_size == 0) return;
  const double m = static_cast<double>(c.memory_size), g = 1.0 + static_cast<double>(c.hard_negatives);
  const double d = static_cast<double>(EncoderRegistry::global().at(c.encoder).output_dim(c.encoder_options));
  const double block = static_cast<double>(c.strategy == "contaccum" ? c.micro_batch : c.total_batch);
  double leaves = 1;
  while (leaves < std::ceil(m / block)) leaves *= 2;
  const double rows = m + static_cast<double>(c.strategy == "contaccum" ? c.micro_batch : c.total_batch);
  const double banks_bytes = 4 * m * (1 + g) * d;
  const double cache_bytes = 4 * 2 * leaves * m;
  // Scores, their softmax and its gradient: three [rows, rows * g] matrices.
  const double loss_bytes = 3 * 4 * rows * rows * g;
  const double need = banks_bytes + cache_bytes + loss_bytes;
  const double available = available_memory_bytes();
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  TORCH_CHECK(available <= 0 || need < available, "config key 'memory_size' = ", c.memory_size, " needs about ",
              need / GiB, " GiB (banks ", banks_bytes / GiB, ", score cache ", cache_bytes / GiB,
              ", the loss over the banks ", loss_bytes / GiB, ") but ", available / GiB,
              " GiB of memory are free; lower memory_size");
}

// Keys that may differ between a run and its resume: how it is watched and
// how fast it runs, not what it computes.
bool changeable_on_resume(const std::string& line) {
  for (const char* key : {"threads:", "log_every:", "keep_checkpoints:"}) {
    if (line.rfind(key, 0) == 0) return true;
  }
  return false;
}

// A run owns its output directory: a new run needs an empty one, and a
// resume needs the config the run was started with.
void claim_output_directory(const std::string& output_dir, const TrainConfig& config, bool resume) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(output_dir, ec)) {
    if (entry.path().filename() != ".lock") found.push_back(entry.path().filename().string());
  }
  std::sort(found.begin(), found.end());
  if (!resume) {
    std::string list;
    for (size_t i = 0; i < found.size() && i < 4; ++i) list += (i ? ", " : "") + found[i];
    TORCH_CHECK(found.empty(), "output directory ", output_dir, " is not empty (", list,
                found.size() > 4 ? ", ..." : "",
                "): pass --resume to continue the run it holds, or choose a new or empty --output directory");
    return;
  }
  const auto saved = (fs::path(output_dir) / "config.yaml").string();
  if (!fs::exists(saved)) return;
  const auto before = TrainConfig::load(saved).to_yaml();
  const auto now = config.to_yaml();
  std::istringstream a(before), b(now);
  std::string la, lb;
  while (std::getline(a, la) && std::getline(b, lb)) {
    TORCH_CHECK(la == lb || (changeable_on_resume(la) && changeable_on_resume(lb)), "cannot resume the run in ",
                output_dir, ": it was started with '", la, "' (", saved, ") but this config says '", lb,
                "'; resume with the same config, or train into a new --output directory");
  }
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
  torch::manual_seed(static_cast<uint64_t>(config.seed));
  TrainedModel out;
  out.config = config;
  Vocabulary vocab;
  if (!config.tokenizer_vocab.empty()) {
    vocab = Vocabulary::load(config.tokenizer_vocab);
  } else if (const auto pretrained = pretrained_directory(config); !pretrained.empty()) {
    vocab = Vocabulary::load((fs::path(pretrained) / "vocab.txt").string());
  } else {
    TORCH_CHECK(corpus != nullptr && !corpus->empty(),
                "build_model: no tokenizer.vocab given and no corpus to train a vocabulary on");
    auto trainer_options = WordPieceTrainerOptions(config.tokenizer_vocab_size);
    trainer_options.basic().lower_case(config.tokenizer_lower_case);
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
  if (const auto& export_hf = EncoderRegistry::global().at(m.config.encoder).export_hf) {
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
    TORCH_CHECK(fs::exists(p), "load_model: ", directory, " is not a saved contaccum model (no ", p, ")");
  }
  verify_model_checksums(directory);
  verify_zip_checksums(weights_path);
  auto config = TrainConfig::load(config_path);
  config.tokenizer_vocab = vocab_path;
  // The weights file has every tensor: no pretrained start.
  if (const auto& key = EncoderRegistry::global().at(config.encoder).pretrained_key; !key.empty()) {
    config.encoder_options.set(key, std::string());
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

TrainingRun run_training(const TrainConfig& config, const std::string& output_dir, bool resume, ProgressMode progress) {
  config.validate();
  require(config.data_corpus, "data.corpus");
  require(config.data_queries, "data.queries");
  TORCH_CHECK(!config.data_train_qrels.empty() || !config.data_hard_negatives.empty(),
              "config key 'data.train_qrels' or 'data.hard_negatives' is required");
  TORCH_CHECK(!output_dir.empty(), "run_training: the output directory must not be empty");
  // Held to the end: a second `contaccum train` on this directory is refused.
  RunDirectoryLock lock(output_dir);
  claim_output_directory(output_dir, config, resume);
  check_bank_memory(config);
  if (config.threads > 0) torch::set_num_threads(static_cast<int>(config.threads));
  const Stopwatch setup_watch;
  TrainingRun run;

  const auto reader =
      ReaderOptions().on_bad_record(config.data_skip_bad_records ? OnBadRecord::Skip : OnBadRecord::Error);
  auto log_report = [&](const std::string& path, const ReadReport& r) {
    spdlog::info("read {}: {} records", path, r.records);
    if (r.skipped > 0) {
      spdlog::warn("{}: skipped {} bad records; first: {}", path, r.skipped,
                   r.problems.empty() ? "" : r.problems.front());
    }
  };
  ReadReport report;
  auto corpus = std::make_shared<TextTable>(read_beir_corpus(config.data_corpus, reader, &report));
  log_report(config.data_corpus, report);
  report = {};
  auto queries = std::make_shared<TextTable>(read_beir_queries(config.data_queries, reader, &report));
  log_report(config.data_queries, report);
  std::shared_ptr<TrainingSet> train_set;
  report = {};
  if (!config.data_hard_negatives.empty()) {
    train_set = std::make_shared<TrainingSet>(
        read_hard_negatives(config.data_hard_negatives, queries, corpus, reader, &report));
    log_report(config.data_hard_negatives, report);
  } else {
    auto qrels = read_qrels(config.data_train_qrels, *queries, *corpus, reader, &report);
    log_report(config.data_train_qrels, report);
    train_set = std::make_shared<TrainingSet>(training_set_from_qrels(queries, corpus, qrels));
  }
  std::vector<Qrel> dev;
  if (!config.data_dev_qrels.empty()) {
    report = {};
    dev = read_qrels(config.data_dev_qrels, *queries, *corpus, reader, &report);
    log_report(config.data_dev_qrels, report);
    dev = first_judged_queries(dev, config.data_dev_max_queries);
    // Found now, not after the whole training run.
    TORCH_CHECK(!judged_queries(dev).empty(), config.data_dev_qrels,
                ": no query has a relevant passage (score > 0), so there is nothing to evaluate (data.dev_qrels)");
  }

  fs::create_directories(output_dir);
  TrainedModel trained;
  const auto saved_vocab = (fs::path(output_dir) / "vocab.txt").string();
  TrainConfig effective = config;
  if (resume && effective.tokenizer_vocab.empty() && fs::exists(saved_vocab)) {
    // The vocabulary the interrupted run trained; retraining would give the
    // same one, but reading it is faster.
    effective.tokenizer_vocab = saved_vocab;
  }
  const Stopwatch vocab_watch;
  trained = build_model(effective, corpus.get());
  trained.config = config;
  if (config.tokenizer_vocab.empty() && pretrained_directory(config).empty()) {
    spdlog::info("WordPiece vocabulary of {} tokens in {:.1f} s", trained.tokenizer->vocab().size(),
                 vocab_watch.seconds());
    write_file_atomically(saved_vocab, vocab_text(trained.tokenizer->vocab()));
  }
  write_file_atomically((fs::path(output_dir) / "config.yaml").string(), config.to_yaml());
  run.setup_seconds = setup_watch.seconds();

  Collator collator(
      trained.text_encoder(),
      CollatorOptions().query_max_length(config.query_max_length).passage_max_length(config.passage_max_length));
  TrainerOptions options;
  options.optimizer(AdamWSetup().lr(config.lr).weight_decay(config.weight_decay))
      .warmup_steps(config.warmup_steps)
      .max_grad_norm(config.max_grad_norm)
      .epochs(config.epochs)
      .max_steps(config.max_steps)
      .seed(static_cast<uint64_t>(config.seed))
      .hard_negatives(config.hard_negatives)
      .output_dir(output_dir)
      .log_every(config.log_every)
      .eval_every(config.eval_every)
      .eval_metric(config.eval_metric)
      .checkpoint_every(config.checkpoint_every)
      .keep_checkpoints(config.keep_checkpoints)
      .non_finite(config.non_finite == "skip" ? NonFinitePolicy::Skip : NonFinitePolicy::Error)
      .max_consecutive_skips(config.max_consecutive_skips)
      .progress(progress);
  Trainer trainer(trained.model, strategy_options(config), train_set, collator, options);
  spdlog::info(
      "{} training examples, {} steps per epoch, {} steps; strategy {} (total_batch {}, micro_batch {}, "
      "memory_size {})",
      train_set->size(), trainer.steps_per_epoch(), trainer.state().total_steps, config.strategy, config.total_batch,
      config.micro_batch, config.memory_size);

  DenseEvalOptions eval_options;
  eval_options.batch_size(config.eval_batch_size)
      .query_max_length(config.query_max_length)
      .passage_max_length(config.passage_max_length);
  const auto tokenize = trained.text_encoder();
  if (!dev.empty()) {
    trainer.set_evaluator(
        [&](DualEncoder& m) { return evaluate_dense(m, tokenize, *corpus, *queries, dev, eval_options).metrics; });
    trainer.on_new_best([&](DualEncoder& m, int64_t step) {
      TrainedModel best = trained;
      best.model = m;
      save_model(best, (fs::path(output_dir) / "best").string());
      spdlog::info("new best {} at step {}", config.eval_metric, step);
    });
  }
  if (resume) {
    if (trainer.resume_latest()) {
      spdlog::info("resumed at step {} of {}", trainer.state().step, trainer.state().total_steps);
    } else {
      spdlog::info("no checkpoint in {}: starting from scratch", output_dir);
    }
  }
  run.train = trainer.train();
  save_model(trained, (fs::path(output_dir) / "model").string());
  if (!dev.empty()) {
    run.dev = run.train.last_eval.queries > 0
                  ? run.train.last_eval
                  : evaluate_dense(trained.model, tokenize, *corpus, *queries, dev, eval_options).metrics;
    nlohmann::json j = {{"final", to_json(*run.dev)},
                        {"best_step", run.train.best_step},
                        {"best_" + config.eval_metric, run.train.best_metric},
                        {"steps", trainer.state().step},
                        {"train_seconds", run.train.seconds}};
    write_file_atomically((fs::path(output_dir) / "eval.json").string(), j.dump(2) + "\n");
  }
  return run;
}

}  // namespace contaccum
