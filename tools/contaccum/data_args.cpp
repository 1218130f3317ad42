#include "data_args.h"

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
  app->add_option("--run", a.run, "also write a TREC run file (for trec_eval)");
  app->add_option("--k", a.k, "results per query")->check(CLI::PositiveNumber);
  app->add_option("--max-queries", a.max_queries, "evaluate the first N judged queries only (0: all)")
      ->check(CLI::NonNegativeNumber);
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

TextTable read_corpus(const std::string& path, bool skip_bad_records) {
  ReadReport report;
  auto corpus = read_beir_corpus(path, reader_options(skip_bad_records), &report);
  warn_skipped(path, report);
  return corpus;
}

void check_passage_ids(const std::vector<std::string>& ids, const TextTable& corpus, const std::string& what) {
  TORCH_CHECK(static_cast<int64_t>(ids.size()) == corpus.size(), what, " holds ", ids.size(),
              " passages but the corpus has ", corpus.size(), " (encode this corpus with `contaccum encode`)");
  for (int64_t row = 0; row < corpus.size(); ++row) {
    TORCH_CHECK(ids[static_cast<size_t>(row)] == corpus.id(row), what, " row ", row, " is passage '",
                ids[static_cast<size_t>(row)], "' but the corpus's row ", row, " is '", corpus.id(row),
                "' (encoded from another corpus, or with other --skip-bad-records)");
  }
}

LoadedData load_data(const DataArgs& a) {
  const auto reader = reader_options(a.skip_bad_records);
  LoadedData d;
  ReadReport report;
  d.corpus = read_corpus(a.corpus, a.skip_bad_records);
  d.queries = read_beir_queries(a.queries, reader, &report);
  warn_skipped(a.queries, report);
  d.qrels = read_qrels(a.qrels, d.queries, d.corpus, reader, &report);
  warn_skipped(a.qrels, report);
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

}  // namespace contaccum::cli
