#pragma once
// Shared helpers of contaccum's libFuzzer targets (see README.md).

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <contaccum/data/reader_options.h>
#include <contaccum/data/text_table.h>
#include <contaccum/data/training_set.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace contaccum_fuzz {

// A c10::Error captures and symbolizes a stack trace when it is built, which
// makes every rejected input cost milliseconds; the fuzzers throw thousands,
// so they fetch none. Call once from LLVMFuzzerInitialize.
inline void init() {
  c10::SetStackTraceFetcher([] { return std::string(); });
}

// With CONTACCUM_FUZZ_VERBOSE set, prints why an input was rejected (to
// see how far a reproducer gets).
inline void rejected(const char* stage, const std::exception& e) {
  static const bool verbose = std::getenv("CONTACCUM_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "rejected by %s: %s\n", stage, e.what());
}

// A per-process file (reused for every input) holding the current input, for
// readers that take a path. `ext` keeps readers that look at the name happy.
inline const std::string& input_path(const char* target, const char* ext) {
  static const std::string path = [&] {
    const char* dir = std::getenv("CONTACCUM_FUZZ_TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/contaccum-fuzz-" + target + "-" + std::to_string(::getpid()) +
           ext;
  }();
  return path;
}

inline const std::string& write_input(const char* target, const char* ext, const uint8_t* data, size_t size) {
  const auto& path = input_path(target, ext);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();  // the harness itself is broken, not the library
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// The two bad-record policies every reader is fuzzed with: stop at the first
// bad record, and skip bad records with a short line limit (so over-long
// lines are exercised too). Not the default 16 MiB limit: every LineReader
// allocates (and zeroes) max_line_bytes + 4 MiB, which under ASan costs
// ~20 ms an input; 4 KiB is the default -max_len of the fuzzer anyway.
// Each input runs under one of them, chosen by its length's parity (every
// insertion or deletion of the mutator flips it, and a reproducer stays
// deterministic): two readers an input would halve the speed.
inline int mode_of(size_t size) { return static_cast<int>(size & 1); }

inline contaccum::ReaderOptions options_for(int mode) {
  contaccum::ReaderOptions options;
  if (mode == 0) options.max_line_bytes(int64_t{1} << 12);
  if (mode == 1) options.on_bad_record(contaccum::OnBadRecord::Skip).max_line_bytes(64);
  return options;
}

// Reads every byte a table's views point at, so ASan checks that they are
// still valid; returns something the optimizer cannot drop.
inline uint64_t touch(const contaccum::TextTable& table) {
  uint64_t h = 0;
  for (int64_t r = 0; r < table.size(); ++r) {
    for (auto s : {table.id(r), table.title(r), table.text(r)}) {
      for (char c : s) h = h * 131 + static_cast<unsigned char>(c);
    }
    if (table.find(table.id(r)) != r) std::abort();  // an id must map back to its row
  }
  return h;
}

inline uint64_t touch(const contaccum::TrainingSet& set) {
  uint64_t h = touch(set.queries()) + touch(set.passages());
  for (int64_t i = 0; i < set.size(); ++i) {
    const int64_t q = set.query(i);
    if (q < 0 || q >= set.queries().size()) std::abort();
    for (auto list : {set.positives(i), set.hard_negatives(i), set.other_negatives(i)}) {
      for (int64_t p : list) {
        if (p < 0 || p >= set.passages().size()) std::abort();  // a row that is not in the table
        h += static_cast<uint64_t>(p);
      }
    }
  }
  return h;
}

// Checks the report's counts against what was read.
inline void check_report(const contaccum::ReadReport& report, int64_t records, int mode) {
  if (report.records != records) std::abort();
  if (mode == 0 && report.skipped != 0) std::abort();
  if (report.skipped < 0 || report.lines < 0) std::abort();
  if (report.problems.size() > 20 || static_cast<int64_t>(report.problems.size()) > report.skipped) std::abort();
}

}  // namespace contaccum_fuzz
