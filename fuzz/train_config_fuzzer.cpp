// Fuzzes TrainConfig::parse (YAML training config plus key=value overrides),
// then validate() and the documented to_yaml round trip.
// Input: YAML text; after the first NUL byte, '\n'-separated overrides.
#include "fuzz_common.h"

#include <contaccum/train/train_config.h>

#include <cstring>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    size_t start = nul + 1;
    while (start <= input.size()) {
      auto end = input.find('\n', start);
      if (end == std::string::npos) end = input.size();
      overrides.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  contaccum::TrainConfig config;
  try {
    config = contaccum::TrainConfig::parse(yaml, overrides, "fuzz.yaml");
  } catch (const std::exception&) {
    return 0;  // rejected config
  }
  try {
    config.validate();
  } catch (const std::exception&) {
  }
  // "Every key with its value, as YAML that `parse` reads back to an equal
  // config" (train_config.h): a config that parsed must round-trip.
  const auto text = config.to_yaml();
  std::string again;
  try {
    again = contaccum::TrainConfig::parse(text, {}, "to_yaml").to_yaml();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "to_yaml output does not parse back: %s\n--- to_yaml:\n%s\n", e.what(), text.c_str());
    std::abort();
  }
  if (again != text) {
    std::fprintf(stderr, "to_yaml round trip differs\n--- first:\n%s\n--- second:\n%s\n", text.c_str(), again.c_str());
    std::abort();
  }
  return 0;
}
