#pragma once

#include <cstdint>
#include <string>

namespace contaccum {

/// Progress of a long job on stderr: a bar redrawn in place on a terminal,
/// a log line every `every_seconds` otherwise (and at the end), so that
/// nothing runs for minutes in silence.
///
/// ```
/// ProgressReporter progress("encode", corpus.size(), "passages");
/// for (...) progress.advance(rows);
/// progress.finish();
/// ```
class ProgressReporter {
 public:
  /// `total` units of work (0 when unknown). `quiet` prints nothing.
  ProgressReporter(std::string label, int64_t total, std::string unit, bool quiet = false, double every_seconds = 10.0);
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  /// `units` more are done.
  void advance(int64_t units);
  /// Prints the final line (once).
  void finish();
  int64_t done() const { return done_; }

 private:
  void print(bool final_line);

  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool quiet_, terminal_, finished_ = false;
  double every_, start_, last_print_;
};

}  // namespace contaccum
