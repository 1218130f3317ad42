#pragma once
// Internal: what the trainer shows and writes about each step: the progress
// bar or log lines, and metrics.jsonl. Not installed.

#include "contaccum/io/atomic_file.h"
#include "contaccum/train/trainer.h"

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace contaccum {
namespace detail {

inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", s / 3600, (s / 60) % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", s);
  }
  return buf;
}

// JSON numbers must be finite; a NaN ratio (zero passage gradient) becomes null.
inline nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// Progress on stderr: a bar redrawn in place on a terminal, log lines elsewhere.
class Progress {
 public:
  Progress(ProgressMode mode, int64_t total_steps, int64_t log_every) : total_(total_steps), every_(log_every) {
    if (mode == ProgressMode::Auto) mode = ::isatty(STDERR_FILENO) ? ProgressMode::Bar : ProgressMode::Lines;
    mode_ = mode;
  }
  ~Progress() { finish(); }

  void update(const StepRecord& r, double elapsed, int64_t steps_this_run) {
    if (mode_ == ProgressMode::Silent) return;
    const bool last = r.step == total_;
    if (r.step % every_ != 0 && r.step != 1 && !last) return;
    const double eta = elapsed / static_cast<double>(steps_this_run) * static_cast<double>(total_ - r.step);
    if (mode_ == ProgressMode::Bar) {
      constexpr int width = 24;
      const int filled = static_cast<int>(width * r.step / std::max<int64_t>(1, total_));
      std::fprintf(stderr, "\r[%s%s] %lld/%lld  loss %.4f  lr %.2e  %.0f ex/s  ETA %s   ",
                   std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
                   static_cast<long long>(r.step), static_cast<long long>(total_), r.stats.loss, r.lr,
                   r.examples_per_second, format_duration(eta).c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else {
      spdlog::info("step {}/{}  epoch {}  loss {:.4f}  lr {:.3e}  |g| {:.3f}  |gq|/|gp| {:.3f}  {:.0f} ex/s  ETA {}",
                   r.step, total_, r.epoch, r.stats.loss, r.lr, r.grad_norms.total, r.grad_norms.ratio,
                   r.examples_per_second, format_duration(eta));
    }
  }
  // Ends the bar's line so that log lines do not overwrite it.
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  ProgressMode mode_;
  int64_t total_, every_;
  bool drawn_ = false;
};

// metrics.jsonl: one line per step, each appended by one write(2) on an
// O_APPEND descriptor. A failed append (a full disk) is cut back off, so the
// file never holds a torn line, and the error names the file and the reason.
// On resume, lines of steps after the checkpoint (and a torn last line left
// by a kill) are dropped first.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, int64_t resumed_step) : path_(path) {
    namespace fs = std::filesystem;
    if (path.empty()) return;
    std::string kept;
    if (resumed_step > 0 && fs::exists(path)) {
      std::ifstream in(path);
      std::string line;
      while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= resumed_step) {
          kept += line + "\n";
        }
      }
    }
    write_file_atomically(path, kept);
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    TORCH_CHECK(fd_ >= 0, "cannot open ", path, " for appending: ", std::strerror(errno));
  }
  ~MetricsLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const nlohmann::json& j) {
    if (fd_ < 0) return;
    const std::string line = j.dump() + '\n';
    const off_t before = ::lseek(fd_, 0, SEEK_END);
    if (detail::write_fully(fd_, line.data(), line.size())) return;
    const int error = errno;
    if (before >= 0 && ::ftruncate(fd_, before) != 0) {
      TORCH_CHECK(false, "cannot write ", path_, ": appending step ", j.value("step", int64_t{-1}), " failed (",
                  std::strerror(error), ") and its partial line could not be removed (", std::strerror(errno), ")");
    }
    TORCH_CHECK(false, "cannot write ", path_, ": appending step ", j.value("step", int64_t{-1}),
                " failed: ", std::strerror(error), " (the file keeps every earlier line whole)");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

inline nlohmann::json metrics_json(const RetrievalMetrics& m) {
  nlohmann::json j = {{"queries", m.queries}};
  for (const auto& [name, value] : m.values) j[name] = number(value);
  return j;
}

// One metrics.jsonl object; the trainer adds `eval` to it before writing.
inline nlohmann::json staleness_stats_json(const StalenessStats& s) {
  return {{"min_age", s.min_age},
          {"max_age", s.max_age},
          {"rows", s.rows},
          {"mean_cosine", number(s.mean_cosine)},
          {"min_cosine", number(s.min_cosine)}};
}

// staleness.query / staleness.passage: the whole sample's fields, plus
// `by_age`, one object per age bucket.
inline nlohmann::json staleness_side_json(const BankSideStaleness& side) {
  auto j = staleness_stats_json(side.all);
  j["by_age"] = nlohmann::json::array();
  for (const auto& b : side.by_age) j["by_age"].push_back(staleness_stats_json(b));
  return j;
}

inline nlohmann::json staleness_json(const BankStaleness& s) {
  return {{"examples", s.examples},
          {"query", staleness_side_json(s.query)},
          {"passage", staleness_side_json(s.passage)},
          {"rank_changed", number(s.rank_changed)},
          {"ranked", s.ranked},
          {"seconds", s.seconds}};
}

inline nlohmann::json step_json(const StepRecord& r) {
  nlohmann::json j = {
      {"step", r.step},
      {"epoch", r.epoch},
      {"loss", number(r.stats.loss)},
      {"lr", r.lr},
      {"grad_norm", number(r.grad_norms.total)},
      {"skipped", !r.non_finite.empty()},
      {"query_grad_norm", number(r.grad_norms.query)},
      {"passage_grad_norm", number(r.grad_norms.passage)},
      {"grad_norm_ratio", number(r.grad_norms.ratio)},
      {"negatives_per_query", r.stats.negatives_per_query},
      // Score entries masked as false negatives (mask_false_negatives), by
      // the kind of column.
      {"masked",
       {{"in_batch", r.stats.masked.in_batch},
        {"hard_negative", r.stats.masked.hard_negative},
        {"bank", r.stats.masked.bank},
        {"banked_query", r.stats.masked.banked_query}}},
      {"query_bank_fill", r.stats.query_bank_fill},
      {"passage_bank_fill", r.stats.passage_bank_fill},
      {"examples_per_second", number(r.examples_per_second)},
      {"reduce_bytes", r.reduce_bytes},
      {"seconds",
       {{"data", r.data_seconds},
        {"encode", r.stats.encode_seconds},
        {"loss", r.stats.loss_seconds},
        {"banks", r.stats.bank_seconds},
        {"gather", r.stats.gather_seconds},
        {"reduce", r.reduce_seconds},
        {"optimizer", r.optimizer_seconds},
        {"total", r.step_seconds}}},
  };
  if (!r.non_finite.empty()) j["non_finite"] = r.non_finite;
  if (r.loss_scale > 0) {
    j["loss_scale"] = r.loss_scale;
    j["overflow"] = r.overflow;
  }
  if (r.allocations) {
    const auto& a = *r.allocations;
    j["allocations"] = {{"count", a.allocations},
                        {"bytes", a.bytes},
                        {"large_count", a.large_allocations},
                        {"large_bytes", a.large_bytes},
                        {"peak_bytes", a.peak_bytes}};
  }
  return j;
}

}  // namespace detail
}  // namespace contaccum
