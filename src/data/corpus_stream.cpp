#include "contaccum/data/corpus_stream.h"

#include "json_lines.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <unordered_map>

namespace contaccum {
namespace {

namespace od = simdjson::ondemand;

// Thrown by a scan's callback to end the scan early; never escapes a scan.
struct StopScan {};

uint64_t id_hash(const std::string& id) { return std::hash<std::string>{}(id); }

// Hashes that more than one kept record's id has: the only ids a repeat can
// hide behind.
std::vector<uint64_t> repeated_hashes(const std::string& path, const ReaderOptions& lenient) {
  std::vector<uint64_t> hashes;
  ReadReport ignored;
  detail::BeirRecord record;
  detail::for_each_json_line(path, lenient, ignored, [&](od::object& obj, int64_t) -> std::string {
    if (auto p = detail::read_beir_record(obj, true, record); !p.empty()) return p;
    hashes.push_back(id_hash(record.id));
    return "";
  });
  std::sort(hashes.begin(), hashes.end());
  std::vector<uint64_t> repeated;
  for (size_t i = 1; i < hashes.size(); ++i) {
    if (hashes[i] == hashes[i - 1] && (repeated.empty() || repeated.back() != hashes[i])) repeated.push_back(hashes[i]);
  }
  return repeated;
}

ReaderOptions lenient_options(const ReaderOptions& options) {
  return ReaderOptions(options).on_bad_record(OnBadRecord::Skip);
}

}  // namespace

CorpusStream::CorpusStream(std::string path, const ReaderOptions& options, ReadReport* report_ptr)
    : path_(std::move(path)), options_(options) {
  std::error_code error;
  file_bytes_ = static_cast<int64_t>(std::filesystem::file_size(path_, error));
  TORCH_CHECK(!error, path_, ": cannot read the corpus (", error.message(), ")");
  file_mtime_ns_ = std::filesystem::last_write_time(path_).time_since_epoch().count();
  const auto suspects = repeated_hashes(path_, lenient_options(options_));
  // The second pass reports like `read_beir_corpus`; an id is compared by
  // its text only when its hash repeats.
  ReadReport local;
  auto& report = report_ptr ? (*report_ptr = ReadReport{}) : local;
  std::unordered_map<std::string, int64_t> first_line;
  detail::BeirRecord record;
  detail::for_each_json_line(path_, options_, report, [&](od::object& obj, int64_t line) -> std::string {
    if (auto p = detail::read_beir_record(obj, true, record); !p.empty()) return p;
    if (std::binary_search(suspects.begin(), suspects.end(), id_hash(record.id)) &&
        !first_line.emplace(record.id, line).second) {
      repeated_lines_.push_back(line);
      return c10::str("duplicate _id '", record.id, "'");
    }
    rows_ += 1;
    return "";
  });
  check_unchanged();
}

void CorpusStream::check_unchanged() const {
  std::error_code error;
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(path_, error));
  TORCH_CHECK(!error, path_, ": cannot read the corpus (", error.message(), ")");
  const auto mtime = std::filesystem::last_write_time(path_).time_since_epoch().count();
  TORCH_CHECK(bytes == file_bytes_ && mtime == file_mtime_ns_, path_, " changed after it was opened (", file_bytes_,
              " bytes then, ", bytes, " now); reopen the corpus");
}

template <typename Fn>
void CorpusStream::scan(Fn&& fn) const {
  check_unchanged();
  ReadReport ignored;
  detail::BeirRecord record;
  int64_t row = 0;
  size_t next_repeat = 0;
  try {
    detail::for_each_json_line(path_, lenient_options(options_), ignored,
                               [&](od::object& obj, int64_t line) -> std::string {
                                 if (auto p = detail::read_beir_record(obj, true, record); !p.empty()) return p;
                                 if (next_repeat < repeated_lines_.size() && repeated_lines_[next_repeat] == line) {
                                   next_repeat += 1;
                                   return "repeated id";
                                 }
                                 fn(row++, record);
                                 return "";
                               });
  } catch (const StopScan&) {
    return;
  }
  TORCH_CHECK(row == rows_, path_, " changed after it was opened: ", row, " passages now, ", rows_, " then");
}

void CorpusStream::for_each_block(int64_t begin, int64_t end, int64_t block_rows, const PassageBlockFn& fn) const {
  TORCH_CHECK(0 <= begin && begin <= end && end <= rows_, "CorpusStream::for_each_block: rows [", begin, ", ", end,
              ") are not within ", path_, "'s ", rows_, " passages");
  TORCH_CHECK(block_rows > 0, "CorpusStream::for_each_block: block_rows must be > 0, got ", block_rows);
  if (begin == end) return;
  TextTable block;
  int64_t first = begin;
  scan([&](int64_t row, const detail::BeirRecord& record) {
    if (row < begin) return;
    block.add(record.id, record.title, record.text);
    if (block.size() == block_rows || row + 1 == end) {
      fn(first, block);
      first += block.size();
      block = TextTable();
    }
    if (row + 1 == end) throw StopScan{};
  });
  TORCH_CHECK(first == end, path_, " changed after it was opened: it ended at passage ", first, " of ", end);
}

std::vector<int64_t> CorpusStream::find(const std::vector<std::string>& ids) const {
  std::unordered_map<std::string_view, std::vector<size_t>> wanted;
  for (size_t i = 0; i < ids.size(); ++i) wanted[ids[i]].push_back(i);
  std::vector<int64_t> rows(ids.size(), -1);
  if (wanted.empty()) return rows;
  size_t found = 0;
  scan([&](int64_t row, const detail::BeirRecord& record) {
    const auto it = wanted.find(record.id);
    if (it == wanted.end()) return;
    for (const auto i : it->second) rows[i] = row;
    if (++found == wanted.size()) throw StopScan{};
  });
  return rows;
}

std::vector<std::string> CorpusStream::ids(const std::vector<int64_t>& rows) const {
  std::vector<int64_t> order;
  for (size_t i = 0; i < rows.size(); ++i) {
    TORCH_CHECK(rows[i] >= 0 && rows[i] < rows_, "CorpusStream::ids: rows[", i, "] = ", rows[i],
                " is out of range for ", path_, "'s ", rows_, " passages");
    order.push_back(static_cast<int64_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return rows[a] < rows[b]; });
  std::vector<std::string> out(rows.size());
  size_t at = 0;
  if (order.empty()) return out;
  scan([&](int64_t row, const detail::BeirRecord& record) {
    for (; at < order.size() && rows[static_cast<size_t>(order[at])] == row; ++at) {
      out[static_cast<size_t>(order[at])] = record.id;
    }
    if (at == order.size()) throw StopScan{};
  });
  return out;
}

}  // namespace contaccum
