// The `contaccum` command line: train, evaluate, BM25 baseline, data sets.
//
//   contaccum train --config FILE.yaml [--set key=value ...] --output DIR [--resume]
//   contaccum eval  --model DIR --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--run FILE]
//   contaccum bm25  --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv [--run FILE]
//   contaccum encode --model DIR --corpus corpus.jsonl --output EMB
//   contaccum search --model DIR --corpus corpus.jsonl [--embeddings EMB | --index IDX [--nprobe N]] [--hybrid-bm25]
//   [QUERY...] contaccum index build --embeddings EMB --output IDX [--type flat|ivf|hnsw] contaccum data debian
//   --translation Translation-en --output DIR contaccum data synthetic --output DIR
#include "cli_checks.h"
#include "command.h"

#include <contaccum/contaccum.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

namespace contaccum::cli {
namespace {
std::vector<std::string>& stored_command_line() {
  static std::vector<std::string> line;
  return line;
}
}  // namespace
const std::vector<std::string>& command_line() { return stored_command_line(); }
void set_command_line(int argc, char** argv) { stored_command_line().assign(argv, argv + argc); }
}  // namespace contaccum::cli

int main(int argc, char** argv) {
  using namespace contaccum;
  // Before any tensor: freed memory stays in the process (see allocator.h).
  const auto allocator = configure_allocator();
  cli::set_command_line(argc, argv);
  CLI::App app{"contaccum: train and evaluate dense retrievers under memory limits"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(CONTACCUM_VERSION_STRING));
  int threads = 0;
  app.add_option("--threads", threads, "LibTorch intra-op threads (0: LibTorch's default)")->check(cli::parallelism(0));
  std::vector<std::unique_ptr<cli::Command>> commands;
  commands.push_back(cli::train_command());
  commands.push_back(cli::eval_command());
  commands.push_back(cli::bm25_command());
  commands.push_back(cli::data_command());
  commands.push_back(cli::encode_command());
  commands.push_back(cli::search_command());
  commands.push_back(cli::index_command());
  for (auto& c : commands) c->add(app);

  CLI11_PARSE(app, argc, argv);
  // Logs go to stderr: stdout carries only the command's JSON result.
  spdlog::set_default_logger(spdlog::stderr_color_mt("contaccum"));
  spdlog::set_pattern("[%H:%M:%S] %v");
  spdlog::debug("{}", allocator.description);
  try {
    if (threads > 0) set_compute_threads(threads);
    for (auto& c : commands) {
      if (c->chosen()) return c->run();
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
