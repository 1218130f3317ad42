#pragma once

#include "contaccum/data/corpus_stream.h"
#include "contaccum/data/reader_options.h"
#include "contaccum/data/text_table.h"
#include "contaccum/data/training_set.h"

#include <memory>
#include <string>
#include <vector>

namespace contaccum {

/// Every reader streams its file through one buffer (except a DPR JSON array,
/// which is parsed whole), keeps each string once, and reports a bad record as
/// "file:line: problem" (or skips and counts it, see `ReaderOptions`).
/// `report`, when given, receives line, record and skip counts.

/// Throws "`path`: no `what`" and why when a read kept no record: the file
/// holds none, or every one was skipped as bad (the first is named). For
/// callers that cannot work with an empty corpus, query or judgement file.
void require_records(const ReadReport& report, const std::string& path, const std::string& what);

/// A BEIR `corpus.jsonl`: one object per line with `_id` (unique), `title`
/// (may be empty or absent) and `text` (non-empty).
TextTable read_beir_corpus(const std::string& path, const ReaderOptions& options = {}, ReadReport* report = nullptr);

/// A BEIR `queries.jsonl`: one object per line with `_id` (unique) and `text`
/// (non-empty).
TextTable read_beir_queries(const std::string& path, const ReaderOptions& options = {}, ReadReport* report = nullptr);

/// One relevance judgement, as rows of the query and corpus tables.
struct Qrel {
  int64_t query = 0;
  int64_t passage = 0;
  int64_t score = 0;
};

/// A BEIR qrels file `qrels/<split>.tsv`: a header line, then
/// `query-id \t corpus-id \t score` (integer). Ids must exist in `queries`
/// and `corpus`.
std::vector<Qrel> read_qrels(const std::string& path, const TextTable& queries, const TextTable& corpus,
                             const ReaderOptions& options = {}, ReadReport* report = nullptr);

/// `read_qrels` against a corpus read from its file: the corpus ids the
/// qrels name are looked up in one scan of it.
std::vector<Qrel> read_qrels(const std::string& path, const TextTable& queries, const CorpusStream& corpus,
                             const ReaderOptions& options = {}, ReadReport* report = nullptr);

/// Training examples from qrels: each query with its judgements of score > 0
/// as positives, in file order of first appearance; no negatives.
TrainingSet training_set_from_qrels(std::shared_ptr<const TextTable> queries, std::shared_ptr<const TextTable> corpus,
                                    const std::vector<Qrel>& qrels);

/// Hard negatives by id (as `train-hard-negatives.tsv`): a header line, then
/// `query-id \t positive-id \t negative-ids` (comma-separated, may be empty).
/// Ids must exist in the tables.
TrainingSet read_hard_negatives(const std::string& path, std::shared_ptr<const TextTable> queries,
                                std::shared_ptr<const TextTable> corpus, const ReaderOptions& options = {},
                                ReadReport* report = nullptr);

/// A DPR training file: the original JSON array of records or the same
/// records one per line (JSONL); the form is detected from the first
/// character. Record: `question`, `positive_ctxs` (non-empty),
/// `hard_negative_ctxs` and `negative_ctxs` (optional); a ctx has `text`
/// (non-empty), optional `title` and optional `passage_id` (string or
/// integer). Ctxs with the same `passage_id` share one passage row.
TrainingSet read_dpr(const std::string& path, const ReaderOptions& options = {}, ReadReport* report = nullptr);

/// Plain TSV tuples: `query \t positive \t negative...` (zero or more hard
/// negatives), no header.
TrainingSet read_tsv_tuples(const std::string& path, const ReaderOptions& options = {}, ReadReport* report = nullptr);

}  // namespace contaccum
