// Fuzzes Vocabulary::load (a BERT vocab.txt) and checks the token <-> id map.
#include "fuzz_common.h"

#include <contaccum/text/vocabulary.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = contaccum_fuzz::write_input("vocabulary", ".txt", data, size);
  try {
    const auto vocab = contaccum::Vocabulary::load(path);
    if (static_cast<int64_t>(vocab.tokens().size()) != vocab.size()) std::abort();
    for (int64_t i = 0; i < vocab.size(); ++i) {
      const auto& token = vocab.token(i);
      if (token.empty() || vocab.id(token) != i) std::abort();  // documented: non-empty, unique, id = line
    }
  } catch (const std::exception&) {
  }
  return 0;
}
