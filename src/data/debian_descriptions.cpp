#include "contaccum/data/debian_descriptions.h"

#include "line_reader.h"

#include <unistd.h>
#include <utf8proc.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <unordered_map>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using detail::BadRecords;
using detail::LineReader;

// ---------------------------------------------------------------------------
// Text as Python sees it: build.py's normalisation uses str.strip(), split()
// and the regex class \s, all of which mean str.isspace().

// Decodes the code point starting at byte `i` and returns its length. Meant
// for valid UTF-8: a continuation byte (never the start of a code point) or a
// truncated sequence gives U+FFFD, other invalid input a wrong code point.
size_t decode(std::string_view s, size_t i, char32_t& cp) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t len = 1;
  if (b < 0x80) {
    cp = b;
  } else if (b >= 0xF0) {
    len = 4;
    cp = b & 0x07;
  } else if (b >= 0xE0) {
    len = 3;
    cp = b & 0x0F;
  } else if (b >= 0xC0) {
    len = 2;
    cp = b & 0x1F;
  } else {
    cp = 0xFFFD;
    return 1;
  }
  if (i + len > s.size()) {
    cp = 0xFFFD;
    return 1;
  }
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return len;
}

// Python's str.isspace() (the same set since Unicode 6.3).
bool py_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Bytes of the whitespace character at `i`, or 0 when there is none.
size_t space_at(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return py_space(b) ? 1 : 0;
  char32_t cp;
  const size_t len = decode(s, i, cp);
  return py_space(cp) ? len : 0;
}

// Python's str.strip().
std::string_view py_strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t len = space_at(s, begin);
    if (len == 0) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    // Step back to the start of the last code point.
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (space_at(s, start) != end - start) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

// len(s.split()).
int64_t py_word_count(std::string_view s) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const size_t len = space_at(s, i);
    if (len > 0) {
      in_word = false;
      i += len;
    } else {
      if (!in_word) ++words;
      in_word = true;
      ++i;
    }
  }
  return words;
}

// build.py's parse(): `joined` is the description's lines joined by spaces,
// with "\n" for a paragraph break. Then
//   re.sub(r"\s*\n\s*", "\n", text).strip(), re.sub(r"[ \t]+", " ", text).
std::string normalise(std::string_view joined) {
  std::string breaks;
  breaks.reserve(joined.size());
  for (size_t i = 0; i < joined.size();) {
    size_t len = space_at(joined, i);
    if (len == 0) {
      breaks.push_back(joined[i++]);
      continue;
    }
    // A whitespace run becomes one '\n' when it holds one.
    const size_t start = i;
    bool newline = false;
    for (; len > 0; len = i < joined.size() ? space_at(joined, i) : 0) {
      newline = newline || joined[i] == '\n';
      i += len;
    }
    if (newline) {
      breaks.push_back('\n');
    } else {
      breaks.append(joined, start, i - start);
    }
  }
  const std::string_view stripped = py_strip(breaks);
  std::string out;
  out.reserve(stripped.size());
  for (const char c : stripped) {
    const bool blank = c == ' ' || c == '\t';
    if (blank && !out.empty() && out.back() == ' ') continue;
    out.push_back(blank ? ' ' : c);
  }
  return out;
}

// s.rstrip(". ")
std::string_view rstrip_dots(std::string_view s) {
  while (!s.empty() && (s.back() == '.' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// a.lower() == b.lower(), with Unicode simple case mapping (Python's full
// mapping differs only for U+0130 and a word-final capital sigma).
bool equal_lowercase(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    char32_t ca, cb;
    i += decode(a, i, ca);
    j += decode(b, j, cb);
    if (ca != cb &&
        utf8proc_tolower(static_cast<utf8proc_int32_t>(ca)) != utf8proc_tolower(static_cast<utf8proc_int32_t>(cb))) {
      return false;
    }
  }
  return i == a.size() && j == b.size();
}

// build.py's strip_restatement(): many descriptions open by repeating the
// synopsis; drop that sentence so the task is not a copy test.
std::string_view strip_restatement(std::string_view synopsis, std::string_view text) {
  const size_t dot = text.find(". ");
  if (dot == std::string_view::npos) return text;
  const std::string_view rest = text.substr(dot + 2);
  if (!rest.empty() && equal_lowercase(rstrip_dots(text.substr(0, dot)), rstrip_dots(synopsis))) return rest;
  return text;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

// Package names become ids in TSV files.
bool valid_package(std::string_view name) {
  return !name.empty() && std::none_of(name.begin(), name.end(),
                                       [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F; });
}

// The start of a line for a message, cut at a code point boundary.
std::string_view excerpt(std::string_view line) {
  if (line.size() <= 40) return line;
  size_t end = 40;
  while (end > 0 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
  return line.substr(0, end);
}

// ---------------------------------------------------------------------------
// CPython's random.Random: MT19937 seeded by init_by_array with the seed's
// 32-bit words, and shuffle() by rejection-sampled getrandbits, so a seed
// gives build.py's order.

class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed) {
    std::array<uint32_t, 2> key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
    init_by_array(key.data(), key[1] != 0 ? 2 : 1);
  }

  template <typename T>
  void shuffle(std::vector<T>& x) {
    for (size_t i = x.size(); i-- > 1;) std::swap(x[i], x[below(static_cast<uint32_t>(i + 1))]);
  }

 private:
  static constexpr int N = 624, M = 397;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < N; ++i) mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = N;
  }

  void init_by_array(const uint32_t* key, int length) {
    init_genrand(19650218U);
    int i = 1, j = 0;
    for (int k = std::max(N, length); k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
      if (++j >= length) j = 0;
    }
    for (int k = N - 1; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000U;
  }

  uint32_t next() {
    if (index_ >= N) {
      for (int k = 0; k < N; ++k) {
        const uint32_t y = (mt_[k] & 0x80000000U) | (mt_[(k + 1) % N] & 0x7FFFFFFFU);
        mt_[k] = mt_[(k + M) % N] ^ (y >> 1) ^ ((y & 1U) ? 0x9908B0DFU : 0U);
      }
      index_ = 0;
    }
    uint32_t y = mt_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680U;
    y ^= (y << 15) & 0xEFC60000U;
    y ^= y >> 18;
    return y;
  }

  // random._randbelow_with_getrandbits(n), n <= 2^32 - 1.
  uint32_t below(uint32_t n) {
    int bits = 0;
    while (bits < 32 && (n >> bits) != 0) ++bits;
    for (;;) {
      const uint32_t r = next() >> (32 - bits);
      if (r < n) return r;
    }
  }

  std::array<uint32_t, N> mt_{};
  int index_ = N;
};

std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

}  // namespace

std::vector<DebianDescription> read_debian_descriptions(const std::string& path, const ReaderOptions& options,
                                                        ReadReport* report_ptr) {
  ReadReport local;
  ReadReport& report = report_ptr ? (*report_ptr = ReadReport{}) : local;
  LineReader reader(path, options.max_line_bytes());
  BadRecords bad(path, options, report);

  enum class Field { None, Description, Other };
  struct Stanza {
    int64_t first_line = 0;  // 0: between stanzas
    bool skipping = false;
    Field open = Field::None;  // the field continuation lines belong to
    bool has_package = false, has_description = false, has_text = false;
    std::string package, synopsis, joined;
  } stanza;

  std::vector<DebianDescription> out;
  auto fail = [&](int64_t line, const auto&... problem) {
    bad(line, problem...);
    stanza.skipping = true;
  };
  auto finish = [&] {
    if (stanza.first_line == 0) return;
    if (!stanza.skipping) {
      if (!stanza.has_package) {
        bad(stanza.first_line, "stanza without a Package field");
      } else if (!stanza.has_description) {
        bad(stanza.first_line, "stanza of package '", stanza.package, "' without a Description field");
      } else {
        out.push_back({std::move(stanza.package), std::move(stanza.synopsis), normalise(stanza.joined)});
        report.records += 1;
      }
    }
    stanza = Stanza{};
  };

  std::string_view line;
  for (;;) {
    const auto status = reader.next(line);
    if (status == LineReader::Status::End) break;
    report.lines += 1;
    const int64_t number = reader.line_number();
    if (status == LineReader::Status::TooLong) {
      if (stanza.first_line == 0) stanza.first_line = number;
      if (!stanza.skipping) fail(number, "line longer than max_line_bytes (", options.max_line_bytes(), ")");
      continue;
    }
    const bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    // A line of blanks ends a stanza unless a field is open: build.py reads
    // it as an empty continuation line, i.e. a paragraph break.
    if (line.empty() || (stanza.open == Field::None && line.find_first_not_of(" \t") == std::string_view::npos)) {
      finish();
      continue;
    }
    if (stanza.first_line == 0) stanza.first_line = number;
    if (stanza.skipping) {
      if (!continuation) stanza.open = Field::Other;
      continue;
    }
    if (!detail::valid_utf8(line)) {
      fail(number, "invalid UTF-8");
      continue;
    }
    if (continuation) {
      if (stanza.open == Field::None) {
        fail(number, "continuation line before any field");
      } else if (stanza.open == Field::Description) {
        std::string_view part = py_strip(line.substr(1));
        if (part == ".") part = {};
        if (stanza.has_text) stanza.joined.push_back(' ');
        stanza.joined.append(part.empty() ? std::string_view("\n") : part);
        stanza.has_text = true;
      }
      continue;
    }
    const size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    if (colon == std::string_view::npos || name.empty() || name.find_first_of(" \t") != std::string_view::npos) {
      fail(number, "expected 'Field: value' or a continuation line, got '", excerpt(line), "'");
      continue;
    }
    const std::string_view value = py_strip(line.substr(colon + 1));
    stanza.open = Field::Other;
    if (iequals(name, "Package")) {
      if (stanza.has_package) {
        fail(number, "repeated Package field");
      } else if (!valid_package(value)) {
        fail(number, "package name must be non-empty without whitespace, got '", excerpt(value), "'");
      } else {
        stanza.package.assign(value);
        stanza.has_package = true;
      }
    } else if (iequals(name, "Description") || iequals(name, "Description-en")) {
      if (stanza.has_description) {
        fail(number, "repeated description field");
      } else {
        stanza.synopsis.assign(value);
        stanza.has_description = true;
        stanza.open = Field::Description;
      }
    }
  }
  finish();
  return out;
}

DebianDatasetSummary build_debian_dataset(const std::vector<DebianDescription>& descriptions,
                                          const std::string& out_dir, const DebianDatasetOptions& options) {
  TORCH_CHECK(options.dev_queries() >= 0, "DebianDatasetOptions::dev_queries must be >= 0, got ",
              options.dev_queries());
  TORCH_CHECK(options.reserved_queries() >= 0, "DebianDatasetOptions::reserved_queries must be >= 0, got ",
              options.reserved_queries());
  TORCH_CHECK(options.max_train_queries() >= -1, "DebianDatasetOptions::max_train_queries must be >= -1, got ",
              options.max_train_queries());
  // At least one word each: the readers reject empty texts.
  TORCH_CHECK(options.min_passage_words() >= 1, "DebianDatasetOptions::min_passage_words must be >= 1, got ",
              options.min_passage_words());
  TORCH_CHECK(options.min_query_words() >= 1, "DebianDatasetOptions::min_query_words must be >= 1, got ",
              options.min_query_words());
  TORCH_CHECK(descriptions.size() < (size_t{1} << 32), "build_debian_dataset: at most 2^32 - 1 descriptions, got ",
              descriptions.size());

  std::unordered_map<std::string_view, int64_t> packages, synopses, texts;
  for (size_t i = 0; i < descriptions.size(); ++i) {
    const auto& d = descriptions[i];
    TORCH_CHECK(valid_package(d.package), "build_debian_dataset: descriptions[", i,
                "].package must be non-empty without whitespace, got '", d.package, "'");
    packages[d.package] += 1;
    synopses[d.synopsis] += 1;
    texts[d.long_description] += 1;
  }

  DebianDatasetSummary summary;
  summary.packages = static_cast<int64_t>(descriptions.size());
  struct Kept {
    std::string_view package, synopsis, text;
  };
  std::vector<Kept> candidates;
  for (const auto& d : descriptions) {
    if (packages[d.package] != 1 || synopses[d.synopsis] != 1 || texts[d.long_description] != 1) {
      summary.dropped_duplicate += 1;
    } else {
      candidates.push_back({d.package, d.synopsis, strip_restatement(d.synopsis, d.long_description)});
    }
  }
  // Descriptions that differ only in their restating first sentence (davix,
  // davix-dev, davix-tests) leave equal passages: no query could tell them
  // apart, so they go too.
  std::unordered_map<std::string_view, int64_t> passages;
  for (const auto& c : candidates) passages[c.text] += 1;
  std::vector<Kept> kept;
  for (const auto& c : candidates) {
    if (passages[c.text] != 1) {
      summary.dropped_duplicate += 1;
    } else if (py_word_count(c.text) < options.min_passage_words() ||
               py_word_count(c.synopsis) < options.min_query_words()) {
      summary.dropped_too_short += 1;
    } else {
      kept.push_back(c);
    }
  }
  summary.kept = static_cast<int64_t>(kept.size());
  const int64_t held = options.reserved_queries() + options.dev_queries();
  TORCH_CHECK(summary.kept > held, "build_debian_dataset: ", summary.kept, " of ", summary.packages, " packages kept (",
              summary.dropped_duplicate, " duplicates, ", summary.dropped_too_short,
              " too short), need more than reserved_queries + dev_queries = ", held, " to leave training queries");

  std::sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) { return a.package < b.package; });
  std::vector<Kept> order = kept;
  PythonRandom(options.seed()).shuffle(order);
  summary.reserved = options.reserved_queries();
  summary.dev = options.dev_queries();
  summary.train = summary.kept - held;
  if (options.max_train_queries() >= 0) summary.train = std::min(summary.train, options.max_train_queries());

  // Ids live here; reserved up front so the views into them stay valid.
  std::vector<std::string> ids;
  ids.reserve(kept.size() + static_cast<size_t>(summary.dev + summary.train) * 2);
  auto id = [&](const char* prefix, std::string_view package) -> std::string_view {
    ids.push_back(prefix + std::string(package));
    return ids.back();
  };
  std::vector<detail::BeirPassage> corpus;
  corpus.reserve(kept.size());
  for (const auto& k : kept) corpus.push_back({id("d:", k.package), k.text});
  auto queries = [&](int64_t begin, int64_t count) {
    std::vector<detail::BeirQuery> rows;
    rows.reserve(static_cast<size_t>(count));
    for (int64_t i = begin; i < begin + count; ++i) {
      const auto& k = order[static_cast<size_t>(i)];
      rows.push_back({id("q:", k.package), k.synopsis, id("d:", k.package)});
    }
    return rows;
  };
  const auto dev = queries(options.reserved_queries(), summary.dev);
  const auto train = queries(held, summary.train);
  detail::write_beir_dataset(out_dir, corpus, train, dev, "build_debian_dataset");
  return summary;
}

namespace detail {

void write_beir_dataset(const std::string& out_dir, const std::vector<BeirPassage>& corpus,
                        const std::vector<BeirQuery>& train, const std::vector<BeirQuery>& dev, const char* caller) {
  TORCH_CHECK(!out_dir.empty(), caller, ": out_dir must not be empty");
  fs::path out(out_dir);
  if (!out.has_filename()) out = out.parent_path();  // "data/" names "data"
  fs::path parent = out.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  TORCH_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), caller, ": ", out_dir,
              " exists and is not a directory");
  fs::create_directories(parent, ec);
  TORCH_CHECK(!ec, caller, ": cannot create ", parent.string(), ": ", ec.message());

  // A hidden sibling: same file system, so the final rename is atomic.
  auto sibling = [&](const char* kind) {
    for (int attempt = 0;; ++attempt) {
      const fs::path p = parent / c10::str(".", out.filename().string(), ".", kind, ".", ::getpid(), ".", attempt);
      if (!fs::exists(p, ec)) return p;
      TORCH_CHECK(attempt < 1000, caller, ": cannot find a free temporary name beside ", out_dir);
    }
  };
  const fs::path tmp = sibling("tmp");
  TORCH_CHECK(fs::create_directory(tmp, ec) && !ec, caller, ": cannot create ", tmp.string(), ": ", ec.message());

  try {
    fs::create_directory(tmp / "qrels");
    auto write = [&](const fs::path& path, const auto& body) {
      std::ofstream file(path, std::ios::binary | std::ios::trunc);
      TORCH_CHECK(file.is_open(), "cannot open ", path.string());
      body(file);
      file.close();
      TORCH_CHECK(!file.fail(), "cannot write ", path.string());
    };
    // ordered_json keeps BEIR's field order; dump() escapes and rejects
    // invalid UTF-8.
    auto json_line = [](std::ostream& file, nlohmann::ordered_json&& record, std::string_view id) {
      try {
        file << record.dump() << '\n';
      } catch (const nlohmann::json::exception& e) {
        TORCH_CHECK(false, "record '", id, "': ", e.what());
      }
    };
    write(tmp / "corpus.jsonl", [&](std::ostream& file) {
      for (const auto& p : corpus) json_line(file, {{"_id", p.id}, {"title", ""}, {"text", p.text}}, p.id);
    });
    write(tmp / "queries.jsonl", [&](std::ostream& file) {
      for (const auto* split : {&train, &dev}) {
        for (const auto& q : *split) json_line(file, {{"_id", q.id}, {"text", q.text}}, q.id);
      }
    });
    for (const auto& [name, split] : {std::pair{"train.tsv", &train}, std::pair{"dev.tsv", &dev}}) {
      write(tmp / "qrels" / name, [&](std::ostream& file) {
        file << "query-id\tcorpus-id\tscore\n";
        for (const auto& q : *split) file << q.id << '\t' << q.positive << "\t1\n";
      });
    }

    if (fs::exists(out)) {
      // Two renames: POSIX rename() cannot replace a non-empty directory.
      const fs::path old = sibling("old");
      fs::rename(out, old);
      try {
        fs::rename(tmp, out);
      } catch (...) {
        fs::rename(old, out, ec);
        throw;
      }
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, out);
    }
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    TORCH_CHECK(false, caller, ": cannot write ", out_dir, ": ", message_of(e));
  }
}

}  // namespace detail
}  // namespace contaccum
