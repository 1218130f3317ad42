// Fuzzes read_beir_corpus (BEIR corpus JSONL) under both bad-record policies (by input length parity).
#include "fuzz_common.h"

#include <contaccum/data/readers.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = contaccum_fuzz::write_input("beir_corpus", ".jsonl", data, size);
  {
    const int mode = contaccum_fuzz::mode_of(size);
    contaccum::ReadReport report;
    try {
      const auto table = contaccum::read_beir_corpus(path, contaccum_fuzz::options_for(mode), &report);
      contaccum_fuzz::touch(table);
      contaccum_fuzz::check_report(report, table.size(), mode);
    } catch (const std::exception&) {
      // A rejected input: the expected outcome for most inputs.
    }
  }
  return 0;
}
