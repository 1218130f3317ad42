// CorpusStream against the in-memory reader it must agree with: the same
// rows (ids, titles, texts) in any cut, the same bad records refused or
// skipped with the same report, the same qrels; repeats found without
// holding the ids; a file changed after opening refused.
#include "test_util.h"

#include <filesystem>
#include <random>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

// A corpus file of `n` lines on fresh random ids and texts, with bad records
// (malformed JSON, empty text, missing _id, a repeated id, blank lines) when
// `with_bad`. Returns the file's text.
std::string random_corpus(std::mt19937_64& rng, int n, bool with_bad) {
  std::string out;
  std::vector<std::string> used;
  auto word = [&] {
    std::string w;
    for (int i = 0, len = 1 + static_cast<int>(rng() % 8); i < len; ++i)
      w.push_back(static_cast<char>('a' + rng() % 26));
    return w;
  };
  for (int i = 0; i < n; ++i) {
    const auto kind = with_bad ? rng() % 20 : 19;
    std::string id = word() + std::to_string(rng() % 100000);
    if (kind == 0 && !used.empty()) id = used[rng() % used.size()];  // a repeat
    used.push_back(id);
    const std::string title = rng() % 3 == 0 ? "" : ", \"title\": \"" + word() + " " + word() + "\"";
    if (kind == 1) {
      out += "{\"_id\": \"" + id + "\", \"text\": \"unterminated\n";
    } else if (kind == 2) {
      out += "{\"_id\": \"" + id + "\"" + title + ", \"text\": \"  \"}\n";
    } else if (kind == 3) {
      out += "{\"text\": \"no id\"}\n";
    } else if (kind == 4) {
      out += "\n";
    } else {
      out += "{\"_id\": \"" + id + "\"" + title + ", \"text\": \"" + word() + " " + word() + " " + word() + "\"}\n";
    }
  }
  return out;
}

class CorpusStreamTest : public test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TEST_F(CorpusStreamTest, BlocksInAnyCutAreTheTablesRowsAndBadRecordsAreSkippedAlike) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const auto path = write("corpus.jsonl", random_corpus(rng_, 2000, true));
  const auto skip = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  ReadReport table_report, stream_report;
  const auto table = read_beir_corpus(path, skip, &table_report);
  const CorpusStream stream(path, skip, &stream_report);
  ASSERT_GT(table_report.skipped, 50);
  EXPECT_EQ(stream.size(), table.size());
  EXPECT_EQ(stream_report.lines, table_report.lines);
  EXPECT_EQ(stream_report.records, table_report.records);
  EXPECT_EQ(stream_report.skipped, table_report.skipped);
  EXPECT_EQ(stream_report.problems, table_report.problems);
  for (const int64_t block_rows : {int64_t{1}, int64_t{7}, int64_t{256}, table.size()}) {
    const int64_t begin = block_rows == 7 ? 33 : 0, end = block_rows == 7 ? table.size() - 5 : table.size();
    int64_t next = begin;
    stream.for_each_block(begin, end, block_rows, [&](int64_t first, const TextTable& block) {
      ASSERT_EQ(first, next);
      ASSERT_LE(block.size(), block_rows);
      for (int64_t i = 0; i < block.size(); ++i) {
        ASSERT_EQ(block.id(i), table.id(first + i)) << "row " << first + i;
        ASSERT_EQ(block.title(i), table.title(first + i));
        ASSERT_EQ(block.full_text(i), table.full_text(first + i));
      }
      next += block.size();
    });
    EXPECT_EQ(next, end) << block_rows;
  }
  // Ids to rows and back, in any order, with ids the corpus lacks.
  std::vector<std::string> ids{"not-there"};
  std::vector<int64_t> rows;
  for (int i = 0; i < 100; ++i) rows.push_back(static_cast<int64_t>(rng_() % table.size()));
  for (const auto row : rows) ids.emplace_back(table.id(row));
  const auto found = stream.find(ids);
  EXPECT_EQ(found[0], -1);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(found[i + 1], table.find(ids[i + 1]));
  const auto back = stream.ids(rows);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(back[i], table.id(rows[i]));
}

TEST_F(CorpusStreamTest, TheFirstBadRecordIsRefusedWithTheTablesMessage) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  for (int trial = 0; trial < 5; ++trial) {
    const auto path = write("corpus.jsonl", random_corpus(rng_, 300, true));
    const auto want = test::error_of([&] { read_beir_corpus(path); });
    ASSERT_THAT(want, HasSubstr(path + ":"));
    EXPECT_EQ(test::error_of([&] { CorpusStream stream(path); }), want);
  }
  // A repeated id is named with its line.
  const auto path = write("repeat.jsonl",
                          "{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\", \"text\": \"y\"}\n"
                          "{\"_id\": \"a\", \"text\": \"z\"}\n");
  EXPECT_THAT(test::error_of([&] { CorpusStream stream(path); }), HasSubstr(path + ":3: duplicate _id 'a'"));
  EXPECT_THAT(test::error_of([&] { CorpusStream stream((dir_ / "missing.jsonl").string()); }),
              HasSubstr("missing.jsonl"));
}

TEST_F(CorpusStreamTest, QrelsAgainstTheStreamAreTheTablesQrels) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const auto corpus_path = write("corpus.jsonl", random_corpus(rng_, 500, false));
  const auto table = read_beir_corpus(corpus_path);
  const CorpusStream stream(corpus_path);
  TextTable queries;
  std::string qrels = "query-id\tcorpus-id\tscore\n";
  for (int i = 0; i < 50; ++i) {
    queries.add("q" + std::to_string(i), "", "query");
    for (int j = 0, n = 1 + static_cast<int>(rng_() % 3); j < n; ++j) {
      qrels += "q" + std::to_string(i) + "\t" + std::string(table.id(static_cast<int64_t>(rng_() % table.size()))) +
               "\t" + std::to_string(rng_() % 3) + "\n";
    }
  }
  const auto good = write("qrels.tsv", qrels);
  const auto want = read_qrels(good, queries, table), got = read_qrels(good, queries, stream);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].query, want[i].query);
    EXPECT_EQ(got[i].passage, want[i].passage);
    EXPECT_EQ(got[i].score, want[i].score);
  }
  const auto bad = write("bad.tsv", qrels + "q3\tnowhere\t1\n");
  EXPECT_EQ(test::error_of([&] { read_qrels(bad, queries, stream); }),
            test::error_of([&] { read_qrels(bad, queries, table); }));
}

TEST_F(CorpusStreamTest, AFileChangedAfterOpeningIsRefused) {
  const auto path = write("corpus.jsonl", random_corpus(rng_, 100, false));
  const CorpusStream stream(path);
  write("corpus.jsonl", random_corpus(rng_, 120, false));
  EXPECT_THAT(test::error_of([&] { stream.ids({0}); }), HasSubstr(path + " changed after it was opened"));
}

}  // namespace
}  // namespace contaccum
