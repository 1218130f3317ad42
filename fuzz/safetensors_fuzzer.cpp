// Fuzzes the safetensors reader: read_safetensors (header and data) and
// load_safetensors_metadata (header only), which must agree.
#include "fuzz_common.h"

#include <contaccum/io/safetensors.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  contaccum_fuzz::init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& path = contaccum_fuzz::write_input("safetensors", ".safetensors", data, size);
  bool full_ok = false;
  contaccum::SafetensorsContents contents;
  try {
    contents = contaccum::read_safetensors(path);
    full_ok = true;
    uint64_t bytes = 0, h = 0;
    for (const auto& [name, t] : contents.tensors) {
      if (!t.defined() || !t.is_contiguous() || t.device() != torch::kCPU) std::abort();
      const auto n = static_cast<uint64_t>(t.numel()) * t.element_size();
      const auto* p = static_cast<const unsigned char*>(t.data_ptr());
      for (uint64_t i = 0; i < n; ++i) h = h * 131 + p[i];  // ASan checks the storage is really there
      bytes += n;
    }
    if (bytes > size) std::abort();  // more tensor data than the file holds
    (void)h;
  } catch (const std::exception&) {
  }
  try {
    const auto metadata = contaccum::load_safetensors_metadata(path);
    if (full_ok && metadata != contents.metadata) std::abort();
  } catch (const std::exception&) {
    if (full_ok) {
      std::fprintf(stderr, "read_safetensors accepted a file whose header load_safetensors_metadata rejects\n");
      std::abort();
    }
  }
  return 0;
}
