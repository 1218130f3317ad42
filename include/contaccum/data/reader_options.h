#pragma once

#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// What a reader does with a bad record (malformed line, missing field, empty
/// text, unknown id, invalid UTF-8, over-long line).
enum class OnBadRecord {
  /// Throw `c10::Error` naming file, line and problem.
  Error,
  /// Skip the record and count it in the `ReadReport`.
  Skip,
};

/// Options shared by every data reader.
struct ReaderOptions {
  /// Default: `OnBadRecord::Error`.
  TORCH_ARG(OnBadRecord, on_bad_record) = OnBadRecord::Error;
  /// Longest accepted line in bytes; longer lines are bad records.
  /// Default: 16 MiB.
  TORCH_ARG(int64_t, max_line_bytes) = int64_t{16} << 20;
};

/// What a reader saw.
struct ReadReport {
  /// Lines read (including a header line).
  int64_t lines = 0;
  /// Records kept.
  int64_t records = 0;
  /// Bad records skipped (only with `OnBadRecord::Skip`).
  int64_t skipped = 0;
  /// "file:line: problem" of the first skipped records (at most 20).
  std::vector<std::string> problems;
};

}  // namespace contaccum
