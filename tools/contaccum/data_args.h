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

/// The same files with the corpus left on disk (`CorpusStream`): what exact
/// dense evaluation needs, in memory flat in the corpus size.
struct StreamedData {
  CorpusStream corpus;
  TextTable queries;
  std::vector<Qrel> qrels;
};

/// Adds `--device` (auto, cpu, cuda, cuda:N; `resolve_device`) to `app`.
void add_device_option(CLI::App* app, std::string& device);

/// `load_model(directory)` moved to `device` (`cuda` is this worker's GPU,
/// by LOCAL_RANK).
TrainedModel load_model_on(const std::string& directory, const std::string& device);

/// Reads a BEIR corpus (bad records skipped and counted, with a warning, when
/// `skip_bad_records`).
TextTable read_corpus(const std::string& path, bool skip_bad_records);

/// Opens a BEIR corpus to be read a block at a time (checked, with the same
/// warning as `read_corpus`).
CorpusStream open_corpus(const std::string& path, bool skip_bad_records);

/// Checks that precomputed passage vectors (`what`: "--embeddings DIR",
/// "--index DIR") hold this corpus's passages, row for row.
void check_passage_ids(const std::vector<std::string>& ids, const PassageSource& corpus, const std::string& what);

/// Throws when `qrels` (read from `qrels_path` with `report`) judges no
/// query relevant, naming the cause: every judgement skipped as a bad record
/// (its queries not in `queries_path`, its passages not in the corpus; the
/// first problem quoted, with counts), or none with a score > 0.
void require_judged_queries(const std::vector<Qrel>& qrels, const ReadReport& report, const std::string& qrels_path,
                            const std::string& queries_path);

/// Reads the three files (bad records skipped and counted with
/// --skip-bad-records); throws when no query has a relevant passage.
LoadedData load_data(const DataArgs& a);

/// `load_data` with the corpus opened, not read.
StreamedData load_streamed_data(const DataArgs& a);

/// Prints the metrics (and the seconds) as one JSON object on stdout.
void print_metrics(const EvalResult& result, double seconds);

}  // namespace contaccum::cli
