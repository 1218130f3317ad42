// Fuzzes read_hard_negatives (train-hard-negatives.tsv) against fixed
// query/corpus tables (tables.h), under both bad-record policies (by input length parity).
#include "fuzz_common.h"
#include "tables.h"

#include <contaccum/data/readers.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = contaccum_fuzz::write_input("hard_negatives", ".tsv", data, size);
  {
    const int mode = contaccum_fuzz::mode_of(size);
    contaccum::ReadReport report;
    try {
      const auto set =
          contaccum::read_hard_negatives(path, contaccum_fuzz::fixed_queries(), contaccum_fuzz::fixed_corpus(),
                                         contaccum_fuzz::options_for(mode), &report);
      contaccum_fuzz::touch(set);
      contaccum_fuzz::check_report(report, report.records, mode);
    } catch (const std::exception&) {
    }
  }
  return 0;
}
