#include "contaccum/core/allocator.h"

#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace contaccum {
namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// The environment variable that already sets glibc's malloc, if any.
std::string malloc_set_by_environment() {
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (!environment(name).empty()) return name;
  }
  if (environment("GLIBC_TUNABLES").find("glibc.malloc.") != std::string::npos) return "GLIBC_TUNABLES";
  return "";
}

// True when `malloc` is not glibc's own (an allocator preloaded or linked
// ahead of the C library).
bool malloc_is_not_glibc() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&malloc), &info) == 0 || info.dli_fname == nullptr) return false;
  return std::strstr(info.dli_fname, "libc.so") == nullptr;
}

}  // namespace

AllocatorReport configure_allocator(const AllocatorSettings& settings) {
#if defined(__GLIBC__)
  if (environment("CONTACCUM_ALLOCATOR") == "system")
    return {false, "allocator: glibc defaults (CONTACCUM_ALLOCATOR=system)"};
  if (const auto name = malloc_set_by_environment(); !name.empty()) {
    return {false, "allocator: glibc malloc as set by " + name};
  }
  if (malloc_is_not_glibc()) return {false, "allocator: another malloc is in use; left as it is"};
  const auto clamp = [](size_t v) { return static_cast<int>(v > static_cast<size_t>(INT_MAX) ? INT_MAX : v); };
  // mallopt takes an int (a negative one would read as a huge size_t).
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, clamp(settings.mmap_threshold)) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, clamp(settings.trim_threshold)) == 1;
  if (!mmap_ok || !trim_ok) return {false, "allocator: glibc refused the thresholds; defaults kept"};
  return {true, "allocator: glibc malloc keeps freed memory (mmap and trim thresholds " +
                    std::to_string(clamp(settings.mmap_threshold)) + " B)"};
#else
  (void)settings;
  return {false, "allocator: not glibc; left as it is"};
#endif
}

}  // namespace contaccum
