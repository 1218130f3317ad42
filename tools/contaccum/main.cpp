// The `contaccum` command line: train, evaluate, BM25 baseline, data sets.
//
//   contaccum train --config FILE.yaml [--set key=value ...] --output DIR [--resume]
//   contaccum eval  --model DIR --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--run FILE]
//   contaccum bm25  --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--run FILE]
//   contaccum data debian --translation Translation-en --output DIR
//   contaccum data synthetic --output DIR
#include <contaccum/contaccum.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

using namespace contaccum;

namespace {

struct DataArgs {
  std::string corpus, queries, qrels, run;
  int64_t k = 100;
  bool skip_bad_records = false;
  int64_t max_queries = 0;
};

void add_data_args(CLI::App* app, DataArgs& a) {
  app->add_option("--corpus", a.corpus, "BEIR corpus.jsonl")->required()->check(CLI::ExistingFile);
  app->add_option("--queries", a.queries, "BEIR queries.jsonl")->required()->check(CLI::ExistingFile);
  app->add_option("--qrels", a.qrels, "BEIR qrels TSV (header line, query-id corpus-id score)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--run", a.run, "also write a TREC run file (for trec_eval)");
  app->add_option("--k", a.k, "results per query")->check(CLI::PositiveNumber);
  app->add_option("--max-queries", a.max_queries, "evaluate the first N judged queries only (0: all)")
      ->check(CLI::NonNegativeNumber);
  app->add_flag("--skip-bad-records", a.skip_bad_records, "skip (and count) malformed records instead of stopping");
}

struct LoadedData {
  TextTable corpus, queries;
  std::vector<Qrel> qrels;
};

LoadedData load_data(const DataArgs& a) {
  const auto reader = ReaderOptions().on_bad_record(a.skip_bad_records ? OnBadRecord::Skip : OnBadRecord::Error);
  LoadedData d;
  ReadReport report;
  auto warn = [&](const std::string& path) {
    if (report.skipped > 0) {
      spdlog::warn("{}: skipped {} bad records; first: {}", path, report.skipped,
                   report.problems.empty() ? "" : report.problems.front());
    }
    report = {};
  };
  d.corpus = read_beir_corpus(a.corpus, reader, &report);
  warn(a.corpus);
  d.queries = read_beir_queries(a.queries, reader, &report);
  warn(a.queries);
  d.qrels = read_qrels(a.qrels, d.queries, d.corpus, reader, &report);
  warn(a.qrels);
  d.qrels = first_judged_queries(d.qrels, a.max_queries);
  TORCH_CHECK(!judged_queries(d.qrels).empty(), a.qrels, ": no query has a relevant passage (score > 0)");
  return d;
}

void print_result(const EvalResult& result, const LoadedData& data, const DataArgs& a, const std::string& run_name,
                  double seconds) {
  if (!a.run.empty()) write_trec_run(a.run, result.ranking, result.query_rows, data.queries, data.corpus, run_name);
  auto j = nlohmann::json::parse(result.metrics.to_json());
  j["seconds"] = seconds;
  std::cout << j.dump() << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"contaccum: train and evaluate dense retrievers under memory limits"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(CONTACCUM_VERSION_STRING));
  int threads = 0;
  app.add_option("--threads", threads, "LibTorch intra-op threads (0: LibTorch's default)")
      ->check(CLI::NonNegativeNumber);

  // train
  auto* train = app.add_subcommand("train", "train a dual encoder as a YAML config says");
  std::string config_path, output_dir, progress = "auto";
  std::vector<std::string> overrides;
  bool resume = false, list_keys = false;
  train->add_option("--config", config_path, "YAML config")->check(CLI::ExistingFile);
  train->add_option("--set", overrides, "override a config key: key=value (repeatable)");
  train->add_option("--output", output_dir, "output directory");
  train->add_flag("--resume", resume, "continue from the newest checkpoint in the output directory");
  train->add_option("--progress", progress, "auto, bar, lines or silent")
      ->check(CLI::IsMember({"auto", "bar", "lines", "silent"}));
  train->add_flag("--list-keys", list_keys, "print every config key with its default and exit");

  // eval
  auto* eval = app.add_subcommand("eval", "evaluate a trained model (exact search) on BEIR-layout data");
  DataArgs eval_args;
  std::string model_dir;
  int64_t batch_size = 256, query_max_length = 0, passage_max_length = 0;
  eval->add_option("--model", model_dir, "a model directory written by `contaccum train` (DIR/model or DIR/best)")
      ->required()
      ->check(CLI::ExistingDirectory);
  add_data_args(eval, eval_args);
  eval->add_option("--batch-size", batch_size, "texts encoded at once")->check(CLI::PositiveNumber);
  eval->add_option("--query-max-length", query_max_length, "token limit of queries (default: the model's)")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--passage-max-length", passage_max_length, "token limit of passages (default: the model's)")
      ->check(CLI::NonNegativeNumber);

  // bm25
  auto* bm25 = app.add_subcommand("bm25", "BM25 baseline on BEIR-layout data");
  DataArgs bm25_args;
  double k1 = 0.9, b = 0.4;
  add_data_args(bm25, bm25_args);
  bm25->add_option("--k1", k1, "BM25 k1")->check(CLI::NonNegativeNumber);
  bm25->add_option("--b", b, "BM25 b")->check(CLI::Range(0.0, 1.0));

  // data
  auto* data = app.add_subcommand("data", "make a BEIR-layout data set");
  data->require_subcommand(1);
  auto* debian = data->add_subcommand("debian", "from Debian's package descriptions (a Translation-en file)");
  std::string translation, data_out;
  int64_t seed = 13, dev_queries = 2000, reserved_queries = 5000, max_train_queries = -1;
  debian->add_option("--translation", translation, "plain-text Translation-en (scripts/fetch-debian-descriptions.sh)")
      ->required()
      ->check(CLI::ExistingFile);
  debian->add_option("--output", data_out, "output directory (replaced atomically)")->required();
  debian->add_option("--seed", seed, "seed of the train/dev split")->check(CLI::NonNegativeNumber);
  debian->add_option("--dev-queries", dev_queries, "dev queries")->check(CLI::NonNegativeNumber);
  debian->add_option("--reserved-queries", reserved_queries, "queries held out and not written (a test split)")
      ->check(CLI::NonNegativeNumber);
  debian->add_option("--max-train-queries", max_train_queries, "at most this many training queries (-1: all)");
  auto* synthetic = data->add_subcommand("synthetic", "a generated data set (no download needed)");
  SyntheticDatasetOptions synthetic_options;
  int64_t synthetic_seed = 13, passages = synthetic_options.passages(), train_q = synthetic_options.train_queries(),
          dev_q = synthetic_options.dev_queries();
  synthetic->add_option("--output", data_out, "output directory (replaced atomically)")->required();
  synthetic->add_option("--seed", synthetic_seed, "seed")->check(CLI::NonNegativeNumber);
  synthetic->add_option("--passages", passages, "passages")->check(CLI::PositiveNumber);
  synthetic->add_option("--train-queries", train_q, "training queries")->check(CLI::PositiveNumber);
  synthetic->add_option("--dev-queries", dev_q, "dev queries")->check(CLI::PositiveNumber);

  CLI11_PARSE(app, argc, argv);
  // Logs go to stderr: stdout carries only the command's JSON result.
  spdlog::set_default_logger(spdlog::stderr_color_mt("contaccum"));
  spdlog::set_pattern("[%H:%M:%S] %v");
  try {
    if (threads > 0) torch::set_num_threads(threads);
    if (train->parsed()) {
      if (list_keys) {
        std::cout << TrainConfig().to_yaml();
        return 0;
      }
      if (config_path.empty() || output_dir.empty()) {
        std::cerr << "contaccum train: --config and --output are required\n";
        return 2;
      }
      auto config = TrainConfig::load(config_path, overrides);
      const auto mode = progress == "bar"      ? ProgressMode::Bar
                        : progress == "lines"  ? ProgressMode::Lines
                        : progress == "silent" ? ProgressMode::Silent
                                               : ProgressMode::Auto;
      auto run = run_training(config, output_dir, resume, mode);
      nlohmann::json j = {{"output", output_dir}, {"steps", run.train.steps}, {"train_seconds", run.train.seconds}};
      if (run.dev) j["dev"] = nlohmann::json::parse(run.dev->to_json());
      std::cout << j.dump() << std::endl;
    } else if (eval->parsed()) {
      const Stopwatch watch;
      auto data = load_data(eval_args);
      auto model = load_model(model_dir);
      DenseEvalOptions options;
      options.batch_size(batch_size)
          .query_max_length(query_max_length > 0 ? query_max_length : model.config.query_max_length)
          .passage_max_length(passage_max_length > 0 ? passage_max_length : model.config.passage_max_length)
          .search(SearchOptions().k(eval_args.k));
      auto result = evaluate_dense(model.model, model.text_encoder(), data.corpus, data.queries, data.qrels, options);
      print_result(result, data, eval_args, "contaccum", watch.seconds());
    } else if (bm25->parsed()) {
      const Stopwatch watch;
      auto data = load_data(bm25_args);
      BM25Index index(data.corpus, BM25Options().k1(k1).b(b));
      auto result = evaluate_bm25(index, data.queries, data.qrels, MetricsOptions(), bm25_args.k);
      print_result(result, data, bm25_args, "bm25", watch.seconds());
    } else if (debian->parsed()) {
      ReadReport report;
      auto descriptions = read_debian_descriptions(translation, ReaderOptions(), &report);
      auto summary = build_debian_dataset(descriptions, data_out,
                                          DebianDatasetOptions()
                                              .seed(static_cast<uint64_t>(seed))
                                              .dev_queries(dev_queries)
                                              .reserved_queries(reserved_queries)
                                              .max_train_queries(max_train_queries));
      nlohmann::json j = {{"output", data_out},
                          {"packages", summary.packages},
                          {"dropped_duplicate", summary.dropped_duplicate},
                          {"dropped_too_short", summary.dropped_too_short},
                          {"corpus", summary.kept},
                          {"train", summary.train},
                          {"dev", summary.dev},
                          {"reserved", summary.reserved}};
      std::cout << j.dump() << std::endl;
    } else if (synthetic->parsed()) {
      build_synthetic_dataset(data_out, synthetic_options.seed(static_cast<uint64_t>(synthetic_seed))
                                            .passages(passages)
                                            .train_queries(train_q)
                                            .dev_queries(dev_q));
      nlohmann::json j = {{"output", data_out}, {"corpus", passages}, {"train", train_q}, {"dev", dev_q}};
      std::cout << j.dump() << std::endl;
    }
  } catch (const c10::Error& e) {
    std::cerr << "contaccum: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "contaccum: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
