#include "contaccum/train/pipeline.h"

#include "contaccum/core/compute_threads.h"
#include "contaccum/core/device.h"
#include "contaccum/core/stopwatch.h"
#include "contaccum/data/readers.h"
#include "contaccum/distributed/process_group.h"
#include "contaccum/encoders/registry.h"
#include "contaccum/eval/evaluate.h"
#include "contaccum/io/zip_checksums.h"
#include "contaccum/text/vocab_builder.h"
#include "contaccum/train/checkpoint.h"
#include "contaccum/train/finite.h"
#include "contaccum/train/run_directory.h"

#include "trained_model_internal.h"

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

using detail::vocab_text;

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
  const auto s = c.strategy_options();
  if (s.memory_size() == 0) return;
  const double m = static_cast<double>(s.memory_size()), g = 1.0 + static_cast<double>(c.trainer.hard_negatives());
  const double d =
      static_cast<double>(EncoderRegistry::global().at(c.model.encoder()).output_dim(c.model.encoder_options()));
  // The rows one bank update writes: a micro-batch when the loss spans one,
  // else the whole batch (the engine's own rule, whatever the preset).
  const double block =
      static_cast<double>(s.negatives() == NegativeScope::MicroBatch ? s.micro_batch() : s.total_batch());
  double leaves = 1;
  while (leaves < std::ceil(m / block)) leaves *= 2;
  const double rows = m + block;
  const double element = s.bank_dtype() == Precision::Fp32 ? 4 : 2;  // bf16 / fp16 banks
  const double banks_bytes = element * m * (1 + g) * d;
  const double cache_bytes = 4 * 2 * leaves * m;
  // Scores, their softmax and its gradient: three [rows, rows * g] matrices.
  const double loss_bytes = 3 * 4 * rows * rows * g;
  const double need = banks_bytes + cache_bytes + loss_bytes;
  const double available = available_memory_bytes();
  constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
  TORCH_CHECK(available <= 0 || need < available, "config key 'memory_size' = ", s.memory_size(), " needs about ",
              need / GiB, " GiB (banks ", banks_bytes / GiB, ", score cache ", cache_bytes / GiB,
              ", the loss over the banks ", loss_bytes / GiB, ") but ", available / GiB,
              " GiB of memory are free; lower memory_size");
}

// Keys that may differ between a run and its resume: how it is watched and
// how fast it runs, not what it computes.
bool changeable_on_resume(const std::string& line) {
  for (const char* key : {"threads:", "log_every:", "keep_checkpoints:", "device:"}) {
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

}  // namespace

namespace {

// What `data.*` names, read and checked before anything is trained.
struct TrainingData {
  std::shared_ptr<TextTable> corpus, queries;
  std::shared_ptr<TrainingSet> train;
  std::vector<Qrel> dev;
};

TrainingData read_training_data(const TrainingDataOptions& files) {
  const auto reader = ReaderOptions().on_bad_record(files.skip_bad_records() ? OnBadRecord::Skip : OnBadRecord::Error);
  ReadReport report;
  auto logged = [&report](const std::string& path) {
    spdlog::info("read {}: {} records", path, report.records);
    if (report.skipped > 0) {
      spdlog::warn("{}: skipped {} bad records; first: {}", path, report.skipped,
                   report.problems.empty() ? "" : report.problems.front());
    }
    report = {};
  };
  TrainingData d;
  d.corpus = std::make_shared<TextTable>(read_beir_corpus(files.corpus(), reader, &report));
  require_records(report, files.corpus(), "passages (data.corpus)");
  logged(files.corpus());
  d.queries = std::make_shared<TextTable>(read_beir_queries(files.queries(), reader, &report));
  require_records(report, files.queries(), "queries (data.queries)");
  logged(files.queries());
  if (!files.hard_negatives().empty()) {
    auto train = read_hard_negatives(files.hard_negatives(), d.queries, d.corpus, reader, &report);
    require_records(report, files.hard_negatives(), "training examples (data.hard_negatives)");
    logged(files.hard_negatives());
    if (!files.train_qrels().empty()) {
      // Every relevant passage of a query is one of its positives, for
      // masking false negatives, not only the one its examples name.
      for (const auto& q : read_qrels(files.train_qrels(), *d.queries, *d.corpus, reader, &report)) {
        if (q.score > 0) train.add_relevant(q.query, {q.passage});
      }
      logged(files.train_qrels());
    }
    d.train = std::make_shared<TrainingSet>(std::move(train));
  } else {
    auto qrels = read_qrels(files.train_qrels(), *d.queries, *d.corpus, reader, &report);
    require_records(report, files.train_qrels(), "judgements (data.train_qrels)");
    const int64_t judgements = report.records;
    logged(files.train_qrels());
    d.train = std::make_shared<TrainingSet>(training_set_from_qrels(d.queries, d.corpus, qrels));
    TORCH_CHECK(d.train->size() > 0, files.train_qrels(), ": no training examples (data.train_qrels): none of its ",
                judgements, " judgements has a score > 0");
  }
  if (!files.dev_qrels().empty()) {
    d.dev = read_qrels(files.dev_qrels(), *d.queries, *d.corpus, reader, &report);
    logged(files.dev_qrels());
    d.dev = first_judged_queries(d.dev, files.dev_max_queries());
    // Found now, not after the whole training run.
    TORCH_CHECK(!judged_queries(d.dev).empty(), files.dev_qrels(),
                ": no query has a relevant passage (score > 0), so there is nothing to evaluate (data.dev_qrels)");
  }
  return d;
}

// Tokenizer and model for the run, and `config.yaml` and a trained
// vocabulary in `output_dir`.
TrainedModel prepare_model(const TrainConfig& config, const std::string& output_dir, bool resume,
                           const TextTable& corpus, bool writes) {
  if (writes) fs::create_directories(output_dir);
  const auto saved_vocab = (fs::path(output_dir) / "vocab.txt").string();
  TrainConfig effective = config;
  if (resume && effective.tokenizer.vocab().empty() && fs::exists(saved_vocab)) {
    // The vocabulary the interrupted run trained; retraining would give the
    // same one, but reading it is faster.
    effective.tokenizer.vocab(saved_vocab);
  }
  const Stopwatch vocab_watch;
  TrainedModel trained = build_model(effective, &corpus);
  trained.config = config;
  if (writes && config.tokenizer.vocab().empty() && config.model.pretrained_directory().empty()) {
    spdlog::info("WordPiece vocabulary of {} tokens in {:.1f} s", trained.tokenizer->vocab().size(),
                 vocab_watch.seconds());
    write_file_atomically(saved_vocab, vocab_text(trained.tokenizer->vocab()));
  }
  if (writes) write_file_atomically((fs::path(output_dir) / "config.yaml").string(), config.to_yaml());
  return trained;
}

TrainerOptions trainer_options(const TrainConfig& config, const std::string& output_dir, ProgressMode progress) {
  auto options = config.trainer;
  options.output_dir(output_dir).progress(progress);
  return options;
}

void write_eval_json(const std::string& output_dir, const TrainConfig& config, const TrainingRun& run, int64_t steps) {
  nlohmann::json j = {{"final", to_json(*run.dev)},
                      {"best_step", run.train.best_step},
                      {"best_" + config.trainer.eval_metric(), run.train.best_metric},
                      {"steps", steps},
                      {"train_seconds", run.train.seconds}};
  write_file_atomically((fs::path(output_dir) / "eval.json").string(), j.dump(2) + "\n");
}

}  // namespace

TrainingRun run_training(const TrainConfig& config, const std::string& output_dir, bool resume, ProgressMode progress,
                         std::shared_ptr<Collective> collective) {
  config.validate();
  config.data.require_files();
  TORCH_CHECK(!output_dir.empty(), "run_training: the output directory must not be empty");
  if (!collective) collective = local_collective();
  // Rank 0 owns the directory and writes every file; the others only read.
  const bool writes = collective->rank() == 0;
  // Held to the end: a second `contaccum train` on this directory is refused.
  std::optional<RunDirectoryLock> lock;
  if (writes) {
    lock.emplace(output_dir);
    claim_output_directory(output_dir, config, resume);
  }
  check_bank_memory(config);
  if (config.threads > 0) set_compute_threads(static_cast<int>(config.threads));
  const Stopwatch setup_watch;
  TrainingRun run;
  const auto data = read_training_data(config.data);
  TrainedModel trained = prepare_model(config, output_dir, resume, *data.corpus, writes);
  // Before the trainer makes its optimizer: every state follows the model.
  const auto environment = DistributedEnvironment::from_environment();
  const auto device = resolve_device(config.device, environment ? environment->local_rank : 0);
  trained.model->to(device);
  run.setup_seconds = setup_watch.seconds();
  for (const auto& p : trained.model->parameters()) run.parameters += p.numel();

  Collator collator(trained.text_encoder(),
                    CollatorOptions(config.lengths).pin_memory(config.lengths.pin_memory() || device.is_cuda()));
  Trainer trainer(trained.model, config.strategy_options(), data.train, collator,
                  trainer_options(config, output_dir, writes ? progress : ProgressMode::Silent));
  trainer.set_collective(collective);
  if (writes) {
    spdlog::info(
        "{} training examples, {} steps per epoch, {} steps; strategy {} (total_batch {}, micro_batch {}, "
        "memory_size {})",
        data.train->size(), trainer.steps_per_epoch(), trainer.state().total_steps, config.strategy,
        config.engine.total_batch(), config.engine.micro_batch(), config.engine.memory_size());
    if (collective->world_size() > 1) {
      spdlog::info("{} ranks: micro_batch {} per rank, {} rows per global micro-batch", collective->world_size(),
                   config.engine.micro_batch(), collective->world_size() * config.engine.micro_batch());
    }
  }

  const auto eval_options = config.dev_eval_options();
  const auto tokenize = trained.text_encoder();
  auto evaluate = [&](DualEncoder& m) {
    return evaluate_dense(m, tokenize, *data.corpus, *data.queries, data.dev, eval_options, *collective).metrics;
  };
  if (!data.dev.empty()) {
    trainer.set_evaluator(evaluate);
    trainer.on_new_best([&](DualEncoder& m, int64_t step) {
      TrainedModel best = trained;
      best.model = m;
      save_model(best, (fs::path(output_dir) / "best").string());
      spdlog::info("new best {} at step {}", config.trainer.eval_metric(), step);
    });
  }
  if (resume) {
    if (trainer.resume_latest()) {
      if (writes) spdlog::info("resumed at step {} of {}", trainer.state().step, trainer.state().total_steps);
    } else if (writes) {
      spdlog::info("no checkpoint in {}: starting from scratch", output_dir);
    }
  }
  run.train = trainer.train();
  // Stopped by a signal: the checkpoint is written; the rest of the grace
  // period is not spent on the final model and its evaluation.
  if (run.train.stop_signal != 0) return run;
  if (writes) save_model(trained, (fs::path(output_dir) / "model").string());
  if (!data.dev.empty()) {
    DualEncoder model = trained.model;
    run.dev = run.train.last_eval.queries > 0 ? run.train.last_eval : evaluate(model);
    if (writes) write_eval_json(output_dir, config, run, trainer.state().step);
  }
  return run;
}

}  // namespace contaccum
