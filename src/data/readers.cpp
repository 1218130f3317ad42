#include "contaccum/data/readers.h"

#include "contaccum/data/corpus_stream.h"

#include "json_lines.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <unordered_map>

namespace contaccum {
namespace {

using detail::BadRecords;
using detail::for_each_json_line;
using detail::json_problem;
using detail::LineReader;
using detail::string_field;
namespace od = simdjson::ondemand;

ReadReport& report_or(ReadReport* report, ReadReport& local) { return report ? (*report = ReadReport{}) : local; }

TextTable read_beir_table(const std::string& path, const ReaderOptions& options, ReadReport* report_ptr, bool titles) {
  ReadReport local;
  auto& report = report_or(report_ptr, local);
  TextTable table;
  detail::BeirRecord record;
  detail::for_each_json_line(path, options, report, [&](od::object& obj, int64_t) -> std::string {
    if (auto p = detail::read_beir_record(obj, titles, record); !p.empty()) return p;
    if (table.add(record.id, record.title, record.text) < 0) return c10::str("duplicate _id '", record.id, "'");
    return "";
  });
  return table;
}

using IsHeader = std::function<bool(const std::vector<std::string_view>& fields)>;
bool is_integer(std::string_view text) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// A qrels file's first line is its header ("query-id corpus-id score") when
// it names no query and its score is not an integer: a judgement whose query
// id is mistyped is a bad record, not a header to skip.
IsHeader qrels_header(const TextTable& queries) {
  return [&queries](const std::vector<std::string_view>& f) {
    return f.empty() || (queries.find(f[0]) < 0 && (f.size() < 3 || !is_integer(f[2])));
  };
}

// A hard-negatives file's ("query-id positive-id negative-ids") when it
// names neither a query nor a passage.
IsHeader hard_negatives_header(const TextTable& queries, const TextTable& corpus) {
  return [&queries, &corpus](const std::vector<std::string_view>& f) {
    return f.empty() || (queries.find(f[0]) < 0 && (f.size() < 2 || corpus.find(f[1]) < 0));
  };
}

// A TSV line of a file (with a header when `is_header` says the first line
// is one); calls fn(fields, line) -> problem.
template <typename Fn>
void for_each_tsv_line(const std::string& path, const ReaderOptions& options, ReadReport& report,
                       const IsHeader& is_header, Fn&& fn) {
  LineReader reader(path, options.max_line_bytes());
  BadRecords bad(path, options, report);
  auto on_line = [&](std::string_view line, int64_t number) {
    if (!detail::valid_utf8(line)) {
      bad(number, "invalid UTF-8");
      return;
    }
    if (line.empty()) return;
    const auto fields = detail::split_tabs(line);
    if (number == 1 && is_header && is_header(fields)) return;
    const auto problem = fn(fields, number);
    if (problem.empty()) {
      report.records += 1;
    } else {
      bad(number, problem);
    }
  };
  detail::for_each_line(reader, report, on_line, [&](int64_t number) { bad.too_long(number); });
}

}  // namespace

void require_records(const ReadReport& report, const std::string& path, const std::string& what) {
  if (report.records > 0) return;
  TORCH_CHECK(report.skipped == 0, path, ": no ", what, ": all ", report.skipped,
              " records were skipped as bad (first: ", report.problems.empty() ? "?" : report.problems.front(), ")");
  TORCH_CHECK(false, path, ": no ", what, " (the file holds no records)");
}

TextTable read_beir_corpus(const std::string& path, const ReaderOptions& options, ReadReport* report) {
  return read_beir_table(path, options, report, /*titles=*/true);
}

TextTable read_beir_queries(const std::string& path, const ReaderOptions& options, ReadReport* report) {
  return read_beir_table(path, options, report, /*titles=*/false);
}

namespace {

// Qrels whose corpus ids `find_passage(id)` maps to rows (-1: unknown).
std::vector<Qrel> read_qrels_with(const std::string& path, const TextTable& queries,
                                  const std::function<int64_t(std::string_view)>& find_passage,
                                  const ReaderOptions& options, ReadReport* report_ptr) {
  ReadReport local;
  auto& report = report_or(report_ptr, local);
  std::vector<Qrel> qrels;
  for_each_tsv_line(path, options, report, qrels_header(queries), [&](const auto& f, int64_t) -> std::string {
    if (f.size() != 3) return c10::str("expected 3 tab-separated fields (query-id, corpus-id, score), got ", f.size());
    Qrel q;
    q.query = queries.find(f[0]);
    if (q.query < 0) return c10::str("unknown query id '", f[0], "'");
    q.passage = find_passage(f[1]);
    if (q.passage < 0) return c10::str("unknown corpus id '", f[1], "'");
    const auto [end, ec] = std::from_chars(f[2].data(), f[2].data() + f[2].size(), q.score);
    if (ec != std::errc() || end != f[2].data() + f[2].size()) return c10::str("score '", f[2], "' is not an integer");
    qrels.push_back(q);
    return "";
  });
  return qrels;
}

}  // namespace

std::vector<Qrel> read_qrels(const std::string& path, const TextTable& queries, const TextTable& corpus,
                             const ReaderOptions& options, ReadReport* report) {
  return read_qrels_with(
      path, queries, [&](std::string_view id) { return corpus.find(id); }, options, report);
}

std::vector<Qrel> read_qrels(const std::string& path, const TextTable& queries, const CorpusStream& corpus,
                             const ReaderOptions& options, ReadReport* report) {
  // The corpus ids the file names (a line that is bad anyway adds at most
  // one), looked up in one scan of the corpus.
  std::vector<std::string> ids;
  {
    ReadReport ignored;
    const auto lenient = ReaderOptions(options).on_bad_record(OnBadRecord::Skip);
    for_each_tsv_line(path, lenient, ignored, qrels_header(queries), [&](const auto& f, int64_t) -> std::string {
      if (f.size() >= 2) ids.emplace_back(f[1]);
      return "";
    });
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const auto rows = corpus.find(ids);
  std::unordered_map<std::string_view, int64_t> row_of;
  for (size_t i = 0; i < ids.size(); ++i) row_of.emplace(ids[i], rows[i]);
  return read_qrels_with(
      path, queries,
      [&](std::string_view id) {
        const auto it = row_of.find(id);
        return it == row_of.end() ? int64_t{-1} : it->second;
      },
      options, report);
}

TrainingSet training_set_from_qrels(std::shared_ptr<const TextTable> queries, std::shared_ptr<const TextTable> corpus,
                                    const std::vector<Qrel>& qrels) {
  std::vector<int64_t> order;
  std::unordered_map<int64_t, std::vector<int64_t>> positives;
  for (const auto& q : qrels) {
    if (q.score <= 0) continue;
    auto& list = positives[q.query];
    if (list.empty()) order.push_back(q.query);
    list.push_back(q.passage);
  }
  TrainingSet set(std::move(queries), std::move(corpus));
  for (const auto query : order) set.add(query, positives[query]);
  return set;
}

TrainingSet read_hard_negatives(const std::string& path, std::shared_ptr<const TextTable> queries,
                                std::shared_ptr<const TextTable> corpus, const ReaderOptions& options,
                                ReadReport* report_ptr) {
  ReadReport local;
  auto& report = report_or(report_ptr, local);
  TrainingSet set(queries, corpus);
  std::vector<int64_t> negatives;
  for_each_tsv_line(
      path, options, report, hard_negatives_header(*queries, *corpus), [&](const auto& f, int64_t) -> std::string {
        if (f.size() != 3 && f.size() != 2) {
          return c10::str("expected 3 tab-separated fields (query-id, positive-id, negative-ids), got ", f.size());
        }
        const int64_t query = queries->find(f[0]);
        if (query < 0) return c10::str("unknown query id '", f[0], "'");
        const int64_t positive = corpus->find(f[1]);
        if (positive < 0) return c10::str("unknown positive id '", f[1], "'");
        negatives.clear();
        if (f.size() == 3) {
          std::string_view rest = f[2];
          while (!rest.empty()) {
            const auto comma = rest.find(',');
            const auto id = rest.substr(0, comma);
            if (!id.empty()) {
              const int64_t row = corpus->find(id);
              if (row < 0) return c10::str("unknown negative id '", id, "'");
              if (row != positive) negatives.push_back(row);
            }
            rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
          }
        }
        set.add(query, {positive}, negatives);
        return "";
      });
  return set;
}

namespace {

// Adds the ctxs of array field `name` to `passages`, collecting their rows.
std::string read_ctxs(od::object& record, const char* name, bool required, TextTable& passages,
                      std::vector<int64_t>& rows) {
  rows.clear();
  od::array ctxs;
  auto err = record[name].get_array().get(ctxs);
  if (err == simdjson::NO_SUCH_FIELD && !required) return "";
  if (err) return json_problem(name, err);
  int64_t index = 0;
  for (auto element : ctxs) {
    od::object ctx;
    if ((err = element.get_object().get(ctx))) return c10::str(name, "[", index, "]: ", json_problem("ctx", err));
    std::string_view text, title;
    std::string id;
    // passage_id is a string in DPR's released files, an integer in others.
    od::value id_value;
    err = ctx["passage_id"].get(id_value);
    if (err != simdjson::NO_SUCH_FIELD) {
      od::json_type type{};
      std::string_view id_view;
      int64_t id_number = 0;
      if (!err) err = id_value.type().get(type);
      if (!err && type == od::json_type::string && !id_value.get_string().get(id_view)) {
        id.assign(id_view);
      } else if (!err && type == od::json_type::number && !id_value.get_int64().get(id_number)) {
        id = std::to_string(id_number);
      } else {
        return c10::str(name, "[", index, "]: field 'passage_id' must be a string or an integer");
      }
    }
    if (auto p = string_field(ctx, "title", title, false, false); !p.empty())
      return c10::str(name, "[", index, "]: ", p);
    std::string title_copy(title);
    if (auto p = string_field(ctx, "text", text, true, true); !p.empty()) return c10::str(name, "[", index, "]: ", p);
    int64_t row = id.empty() ? -1 : passages.find(id);
    if (row < 0) row = passages.add(id.empty() ? c10::str("ctx", passages.size()) : id, title_copy, text);
    rows.push_back(row);
    ++index;
  }
  if (required && rows.empty()) return c10::str("'", name, "' is empty");
  return "";
}

struct DprBuilder {
  std::shared_ptr<TextTable> queries = std::make_shared<TextTable>();
  std::shared_ptr<TextTable> passages = std::make_shared<TextTable>();
  std::vector<int64_t> query_rows;
  std::vector<std::vector<int64_t>> positives, hard, other;

  // Parses one record; on a problem nothing is kept (passage rows already
  // added stay in the table, unused).
  std::string add(od::object& record) {
    std::string_view question;
    if (auto p = string_field(record, "question", question, true, true); !p.empty()) return p;
    std::string question_copy(question);
    std::vector<int64_t> pos, hn, neg;
    if (auto p = read_ctxs(record, "positive_ctxs", true, *passages, pos); !p.empty()) return p;
    if (auto p = read_ctxs(record, "hard_negative_ctxs", false, *passages, hn); !p.empty()) return p;
    if (auto p = read_ctxs(record, "negative_ctxs", false, *passages, neg); !p.empty()) return p;
    query_rows.push_back(queries->add("", "", question_copy));
    positives.push_back(std::move(pos));
    hard.push_back(std::move(hn));
    other.push_back(std::move(neg));
    return "";
  }

  TrainingSet finish() {
    TrainingSet set(queries, passages);
    for (size_t i = 0; i < query_rows.size(); ++i) set.add(query_rows[i], positives[i], hard[i], other[i]);
    return set;
  }
};

int64_t line_of(const char* begin, const char* at) { return 1 + static_cast<int64_t>(std::count(begin, at, '\n')); }

}  // namespace

TrainingSet read_dpr(const std::string& path, const ReaderOptions& options, ReadReport* report_ptr) {
  ReadReport local;
  auto& report = report_or(report_ptr, local);
  DprBuilder builder;
  // Peek at the first non-blank character: '[' means the original JSON array.
  char first = 0;
  {
    LineReader peek(path, options.max_line_bytes());
    std::string_view line;
    while (first == 0 && peek.next(line) == LineReader::Status::Line) {
      const auto pos = line.find_first_not_of(" \t\xEF\xBB\xBF");
      if (pos != std::string_view::npos) first = line[pos];
    }
  }
  if (first != '[') {
    for_each_json_line(path, options, report,
                       [&](od::object& record, int64_t) -> std::string { return builder.add(record); });
    return builder.finish();
  }

  simdjson::padded_string json;
  auto err = simdjson::padded_string::load(path).get(json);
  TORCH_CHECK(!err, path, ": cannot read: ", simdjson::error_message(err));
  BadRecords bad(path, options, report);
  report.lines =
      line_of(json.data(), json.data() + json.size()) - (json.size() && json.data()[json.size() - 1] == '\n');
  od::parser parser;
  od::document doc;
  od::array records;
  err = parser.iterate(json).get(doc);
  if (!err) err = doc.get_array().get(records);
  if (err) {
    bad(1, json_problem("top level", err));
    return builder.finish();
  }
  for (auto element : records) {
    const char* where = nullptr;
    const int64_t line = doc.current_location().get(where) ? 0 : line_of(json.data(), where);
    od::object record;
    err = element.get_object().get(record);
    if (err) {
      // The array itself is broken: nothing after this point can be trusted.
      TORCH_CHECK(options.on_bad_record() == OnBadRecord::Skip || err == simdjson::INCORRECT_TYPE, path, ":", line,
                  ": ", json_problem("record", err));
      bad(line, err == simdjson::INCORRECT_TYPE ? std::string("expected a JSON object") : json_problem("record", err));
      if (err != simdjson::INCORRECT_TYPE) break;
      continue;
    }
    const auto problem = builder.add(record);
    if (problem.empty()) {
      report.records += 1;
    } else {
      bad(line, problem);
    }
  }
  return builder.finish();
}

TrainingSet read_tsv_tuples(const std::string& path, const ReaderOptions& options, ReadReport* report_ptr) {
  ReadReport local;
  auto& report = report_or(report_ptr, local);
  auto queries = std::make_shared<TextTable>();
  auto passages = std::make_shared<TextTable>();
  std::vector<int64_t> query_rows;
  std::vector<std::vector<int64_t>> rows;
  for_each_tsv_line(path, options, report, IsHeader(), [&](const auto& f, int64_t) -> std::string {
    if (f.size() < 2) return c10::str("expected at least 2 tab-separated fields (query, positive), got ", f.size());
    for (size_t i = 0; i < f.size(); ++i) {
      if (f[i].find_first_not_of(" \r") == std::string_view::npos) return c10::str("field ", i + 1, " is empty");
    }
    query_rows.push_back(queries->add("", "", f[0]));
    std::vector<int64_t> example;
    for (size_t i = 1; i < f.size(); ++i) example.push_back(passages->add("", "", f[i]));
    rows.push_back(std::move(example));
    return "";
  });
  TrainingSet set(queries, passages);
  for (size_t i = 0; i < rows.size(); ++i) {
    set.add(query_rows[i], {rows[i].front()}, c10::ArrayRef<int64_t>(rows[i].data() + 1, rows[i].size() - 1));
  }
  return set;
}

}  // namespace contaccum
