// Fuzzes read_qrels (BEIR qrels TSV) against fixed query/corpus tables
// (tables.h), under both bad-record policies (by input length parity).
#include "fuzz_common.h"
#include "tables.h"

#include <contaccum/data/readers.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = contaccum_fuzz::write_input("qrels", ".tsv", data, size);
  const auto queries = contaccum_fuzz::fixed_queries();
  const auto corpus = contaccum_fuzz::fixed_corpus();
  {
    const int mode = contaccum_fuzz::mode_of(size);
    contaccum::ReadReport report;
    try {
      const auto qrels = contaccum::read_qrels(path, *queries, *corpus, contaccum_fuzz::options_for(mode), &report);
      for (const auto& q : qrels) {
        if (q.query < 0 || q.query >= queries->size() || q.passage < 0 || q.passage >= corpus->size()) std::abort();
      }
      contaccum_fuzz::check_report(report, static_cast<int64_t>(qrels.size()), mode);
      // What the pipeline does next with qrels.
      const auto set = contaccum::training_set_from_qrels(queries, corpus, qrels);
      contaccum_fuzz::touch(set);
    } catch (const std::exception&) {
    }
  }
  return 0;
}
