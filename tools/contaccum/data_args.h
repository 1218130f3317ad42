#pragma once
// The data flags `eval` and `bm25` share, and what they load.

#include <contaccum/contaccum.h>

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace contaccum::cli {

struct DataArgs {
  std::string corpus, queries, qrels, run;
  int64_t k = 100;
  bool skip_bad_records = false;
  int64_t max_queries = 0;
};

void add_data_args(CLI::App* app, DataArgs& a);

struct LoadedData {
  TextTable corpus, queries;
  std::vector<Qrel> qrels;
};

/// Reads the three files (bad records skipped and counted with
/// --skip-bad-records); throws when no query has a relevant passage.
LoadedData load_data(const DataArgs& a);

/// Prints the metrics (and the seconds) as one JSON object on stdout; writes
/// the TREC run file when --run was given.
void print_result(const EvalResult& result, const LoadedData& data, const DataArgs& a, const std::string& run_name,
                  double seconds);

}  // namespace contaccum::cli
