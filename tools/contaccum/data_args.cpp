#include "data_args.h"
#include "cli_checks.h"

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <iostream>

namespace contaccum::cli {

void add_data_args(CLI::App* app, DataArgs& a) {
  app->add_option("--corpus", a.corpus, "BEIR corpus.jsonl")->required()->check(CLI::ExistingFile);
  app->add_option("--queries", a.queries, "BEIR queries.jsonl")->required()->check(CLI::ExistingFile);
  app->add_option("--qrels", a.qrels, "BEIR qrels TSV (header line, query-id corpus-id score)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--run", a.run, "also write a TREC run file (for trec_eval)")->check(cli::output_file());
  app->add_option("--k", a.k, "results per query")->check(cli::positive());
  app->add_option("--max-queries", a.max_queries, "evaluate the first N judged queries only (0: all)")
      ->check(cli::non_negative());
  app->add_flag("--skip-bad-records", a.skip_bad_records, "skip (and count) malformed records instead of stopping");
}

namespace {

ReaderOptions reader_options(bool skip_bad_records) {
  return ReaderOptions().on_bad_record(skip_bad_records ? OnBadRecord::Skip : OnBadRecord::Error);
}

void warn_skipped(const std::string& path, ReadReport& report) {
  if (report.skipped > 0) {
    spdlog::warn("{}: skipped {} bad records; first: {}", path, report.skipped,
                 report.problems.empty() ? "" : report.problems.front());
  }
  report = {};
}

}  // namespace

void require_judged_queries(const std::vector<Qrel>& qrels, const ReadReport& report, const std::string& qrels_path,
                            const std::string& queries_path) {
  if (!judged_queries(qrels).empty()) return;
  // Say why: skipped records (queries or passages the files lack) or no
  // judgement with a positive score.
  const int64_t records = report.records + report.skipped;
  TORCH_CHECK(report.skipped == 0, qrels_path, ": no query to evaluate: all ", report.skipped, " of its ", records,
              " judgements were skipped as bad records (first: ",
              report.problems.empty() ? std::string("?") : report.problems.front(), "): are its queries in ",
              queries_path, " and its passages in the corpus?");
  TORCH_CHECK(false, qrels_path, ": no query has a relevant passage: none of its ", records,
              " judgements has a score > 0");
}

TextTable read_corpus(const std::string& path, bool skip_bad_records) {
  ReadReport report;
  auto corpus = read_beir_corpus(path, reader_options(skip_bad_records), &report);
  require_records(report, path, "passages");
  warn_skipped(path, report);
  return corpus;
}

void add_device_option(CLI::App* app, std::string& device) {
  app->add_option("--device", device, "auto, cpu, cuda (this worker's GPU) or cuda:N (default: auto)")
      ->check([](const std::string& text) { return device_spec()(text); });
}

TrainedModel load_model_on(const std::string& directory, const std::string& device) {
  auto model = load_model(directory);
  const auto env = DistributedEnvironment::from_environment();
  model.model->to(resolve_device(device, env ? env->local_rank : 0));
  return model;
}

CorpusStream open_corpus(const std::string& path, bool skip_bad_records) {
  ReadReport report;
  CorpusStream corpus(path, reader_options(skip_bad_records), &report);
  require_records(report, path, "passages");
  warn_skipped(path, report);
  return corpus;
}

void check_passage_ids(const std::vector<std::string>& ids, const PassageSource& corpus, const std::string& what) {
  TORCH_CHECK(static_cast<int64_t>(ids.size()) == corpus.size(), what, " holds ", ids.size(),
              " passages but the corpus has ", corpus.size(), " (encode this corpus with `contaccum encode`)");
  corpus.for_each_block(0, corpus.size(), 65536, [&](int64_t first, const TextTable& block) {
    for (int64_t i = 0; i < block.size(); ++i) {
      const auto& id = ids[static_cast<size_t>(first + i)];
      TORCH_CHECK(id == block.id(i), what, " row ", first + i, " is passage '", id, "' but the corpus's row ",
                  first + i, " is '", block.id(i), "' (encoded from another corpus, or with other --skip-bad-records)");
    }
  });
}

namespace {

// The queries and qrels of `a` against `corpus` (a table or a stream).
template <typename Corpus>
std::pair<TextTable, std::vector<Qrel>> read_queries_and_qrels(const DataArgs& a, const Corpus& corpus) {
  const auto reader = reader_options(a.skip_bad_records);
  ReadReport report;
  auto queries = read_beir_queries(a.queries, reader, &report);
  require_records(report, a.queries, "queries");
  warn_skipped(a.queries, report);
  auto qrels = read_qrels(a.qrels, queries, corpus, reader, &report);
  require_judged_queries(qrels, report, a.qrels, a.queries);
  warn_skipped(a.qrels, report);
  qrels = first_judged_queries(qrels, a.max_queries);
  return {std::move(queries), std::move(qrels)};
}

}  // namespace

LoadedData load_data(const DataArgs& a) {
  LoadedData d;
  d.corpus = read_corpus(a.corpus, a.skip_bad_records);
  std::tie(d.queries, d.qrels) = read_queries_and_qrels(a, d.corpus);
  return d;
}

StreamedData load_streamed_data(const DataArgs& a) {
  auto corpus = open_corpus(a.corpus, a.skip_bad_records);
  auto [queries, qrels] = read_queries_and_qrels(a, corpus);
  return {std::move(corpus), std::move(queries), std::move(qrels)};
}

void print_metrics(const EvalResult& result, double seconds) {
  auto j = nlohmann::json::parse(result.metrics.to_json());
  j["seconds"] = seconds;
  std::cout << j.dump() << std::endl;
}

}  // namespace contaccum::cli
