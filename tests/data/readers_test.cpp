// Readers: correct records from well-formed files, and for every kind of bad
// input an error naming file, line and problem (or a counted skip).
#include "test_util.h"

#include <contaccum/data/readers.h>

#include <filesystem>
#include <fstream>

namespace contaccum {
namespace {

namespace fs = std::filesystem;

class Readers : public test::TempDirTest {};
using test::error_of;
using test::slurp;

const char* kCorpus =
    "{\"_id\": \"d1\", \"title\": \"T1\", \"text\": \"first \\\"quoted\\\" text\"}\n"
    "{\"text\": \"second\", \"_id\": \"d2\"}\n"
    "\n"
    "{\"_id\": \"d3\", \"title\": \"\", \"text\": \"caf\\u00e9 \xE2\x82\xAC\"}\r\n";

TEST_F(Readers, BeirCorpusKeepsIdsTitlesAndUnescapedText) {
  ReadReport report;
  const auto corpus = read_beir_corpus(write("corpus.jsonl", kCorpus), {}, &report);
  ASSERT_EQ(corpus.size(), 3);
  EXPECT_EQ(corpus.id(0), "d1");
  EXPECT_EQ(corpus.title(0), "T1");
  EXPECT_EQ(corpus.text(0), "first \"quoted\" text");
  EXPECT_EQ(corpus.full_text(0), "T1 first \"quoted\" text");
  EXPECT_EQ(corpus.title(1), "");
  EXPECT_EQ(corpus.full_text(1), "second");
  EXPECT_EQ(corpus.text(2), "caf\xC3\xA9 \xE2\x82\xAC");
  EXPECT_EQ(corpus.find("d2"), 1);
  EXPECT_EQ(corpus.find("nope"), -1);
  EXPECT_EQ(report.lines, 4);
  EXPECT_EQ(report.records, 3);
}

TEST_F(Readers, BadJsonlRecordsNameFileLineAndProblem) {
  struct Bad {
    std::string line;
    std::string problem;
  };
  const std::vector<Bad> cases = {
      {"{\"_id\": \"x\", \"text\": \"unterminated}", "malformed JSON"},
      {"[1, 2]", "expected a JSON object"},
      {"{\"_id\": \"x\"}", "missing field 'text'"},
      {"{\"text\": \"t\"}", "missing field '_id'"},
      {"{\"_id\": \"x\", \"text\": \"  \"}", "empty 'text'"},
      {"{\"_id\": 5, \"text\": \"t\"}", "field '_id' has the wrong type"},
      {"{\"_id\": \"d1\", \"text\": \"again\"}", "duplicate _id 'd1'"},
      {"{\"_id\": \"x\", \"text\": \"bad \xC3\x28 byte\"}", "invalid UTF-8"},
  };
  for (const auto& c : cases) {
    const auto path = write("bad.jsonl", "{\"_id\": \"d1\", \"text\": \"ok\"}\n\n" + c.line + "\n");
    const auto message = error_of([&] { read_beir_corpus(path); });
    EXPECT_THAT(message, ::testing::HasSubstr(path + ":3: " + c.problem)) << c.line;
  }
}

TEST_F(Readers, SkipPolicyCountsBadRecordsAndKeepsTheRest) {
  const auto path =
      write("mixed.jsonl",
            "{\"_id\": \"a\", \"text\": \"ok\"}\n{oops\n{\"_id\": \"b\"}\n{\"_id\": \"c\", \"text\": \"ok\"}\n");
  ReadReport report;
  const auto table = read_beir_queries(path, ReaderOptions().on_bad_record(OnBadRecord::Skip), &report);
  EXPECT_EQ(table.size(), 2);
  EXPECT_EQ(report.skipped, 2);
  EXPECT_EQ(report.records, 2);
  ASSERT_EQ(report.problems.size(), 2u);
  EXPECT_THAT(report.problems[0], ::testing::HasSubstr(":2: malformed JSON"));
  EXPECT_THAT(report.problems[1], ::testing::HasSubstr(":3: missing field 'text'"));
}

TEST_F(Readers, OverLongLinesAreBadRecordsAndReadingGoesOn) {
  const std::string long_text(5000, 'x');
  const auto path = write("long.jsonl", "{\"_id\": \"a\", \"text\": \"ok\"}\n{\"_id\": \"b\", \"text\": \"" +
                                            long_text + "\"}\n{\"_id\": \"c\", \"text\": \"ok\"}");
  EXPECT_THAT(error_of([&] { read_beir_queries(path, ReaderOptions().max_line_bytes(1000)); }),
              ::testing::HasSubstr(path + ":2: line longer than max_line_bytes (1000)"));
  ReadReport report;
  const auto table =
      read_beir_queries(path, ReaderOptions().max_line_bytes(1000).on_bad_record(OnBadRecord::Skip), &report);
  EXPECT_EQ(table.size(), 2);
  EXPECT_EQ(table.id(1), "c") << "the last line has no newline";
  EXPECT_EQ(report.lines, 3);
}

TEST_F(Readers, MissingFileIsAClearError) {
  EXPECT_THAT(error_of([&] { read_beir_corpus((dir_ / "absent.jsonl").string()); }),
              ::testing::HasSubstr("absent.jsonl: cannot open"));
}

TEST_F(Readers, QrelsResolveIdsAndRejectUnknownOnes) {
  const auto corpus = read_beir_corpus(write("corpus.jsonl", kCorpus));
  const auto queries =
      read_beir_queries(write("q.jsonl", "{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q2\", \"text\": \"b\"}\n"));
  const auto qrels =
      read_qrels(write("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t2\nq2\td1\t0\n"), queries, corpus);
  ASSERT_EQ(qrels.size(), 3u);
  EXPECT_EQ(qrels[1].query, 1);
  EXPECT_EQ(qrels[1].passage, 2);
  EXPECT_EQ(qrels[1].score, 2);
  auto set =
      training_set_from_qrels(std::make_shared<TextTable>(read_beir_queries((dir_ / "q.jsonl").string())),
                              std::make_shared<TextTable>(read_beir_corpus((dir_ / "corpus.jsonl").string())), qrels);
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.positives(1).size(), 1u) << "score 0 is not a positive";

  const std::string header = "query-id\tcorpus-id\tscore\n";
  const auto unknown_q = write("u1.tsv", header + "q1\td1\t1\nq9\td1\t1\n");
  EXPECT_THAT(error_of([&] { read_qrels(unknown_q, queries, corpus); }),
              ::testing::HasSubstr(unknown_q + ":3: unknown query id 'q9'"));
  const auto unknown_d = write("u2.tsv", header + "q1\td7\t1\n");
  EXPECT_THAT(error_of([&] { read_qrels(unknown_d, queries, corpus); }),
              ::testing::HasSubstr(unknown_d + ":2: unknown corpus id 'd7'"));
  const auto bad_score = write("u3.tsv", header + "q1\td1\tone\n");
  EXPECT_THAT(error_of([&] { read_qrels(bad_score, queries, corpus); }),
              ::testing::HasSubstr(":2: score 'one' is not an integer"));
  const auto fields = write("u4.tsv", header + "q1 d1 1\n");
  EXPECT_THAT(error_of([&] { read_qrels(fields, queries, corpus); }),
              ::testing::HasSubstr(":2: expected 3 tab-separated fields"));
  const auto utf8 = write("u5.tsv", header + "q1\td\xFF\t1\n");
  EXPECT_THAT(error_of([&] { read_qrels(utf8, queries, corpus); }), ::testing::HasSubstr(":2: invalid UTF-8"));
}

TEST_F(Readers, HardNegativesById) {
  auto corpus = std::make_shared<TextTable>(read_beir_corpus(write("corpus.jsonl", kCorpus)));
  auto queries = std::make_shared<TextTable>(
      read_beir_queries(write("q.jsonl", "{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q2\", \"text\": \"b\"}\n")));
  const auto set = read_hard_negatives(
      write("hn.tsv", "query-id\tpositive-id\tnegative-ids\nq1\td1\td2,d3\nq2\td2\t\n"), queries, corpus);
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.query(1), 1);
  EXPECT_EQ(set.positives(0)[0], 0);
  EXPECT_EQ(std::vector<int64_t>(set.hard_negatives(0).begin(), set.hard_negatives(0).end()),
            (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(set.hard_negatives(1).empty());
  const auto bad = write("bad.tsv", "query-id\tpositive-id\tnegative-ids\nq1\td1\td2,dX\n");
  EXPECT_THAT(error_of([&] { read_hard_negatives(bad, queries, corpus); }),
              ::testing::HasSubstr(bad + ":2: unknown negative id 'dX'"));
}

// A qrels or hard-negative file without its header keeps its first record.
TEST_F(Readers, AMissingHeaderLosesNoRecord) {
  const auto corpus = read_beir_corpus(write("corpus.jsonl", kCorpus));
  const auto queries =
      read_beir_queries(write("q.jsonl", "{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q2\", \"text\": \"b\"}\n"));
  const auto with =
      read_qrels(write("with.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t2\n"), queries, corpus);
  const auto without = read_qrels(write("without.tsv", "q1\td2\t1\nq2\td3\t2\n"), queries, corpus);
  ASSERT_EQ(with.size(), 2u);
  ASSERT_EQ(without.size(), 2u);
  EXPECT_EQ(without[0].query, 0);
  EXPECT_EQ(without[0].passage, 1);
  auto c = std::make_shared<TextTable>(read_beir_corpus((dir_ / "corpus.jsonl").string()));
  auto q = std::make_shared<TextTable>(read_beir_queries((dir_ / "q.jsonl").string()));
  EXPECT_EQ(read_hard_negatives(write("hn.tsv", "q1\td1\td2,d3\nq2\td2\t\n"), q, c).size(), 2);
  // Any other first line is a header (whatever its names), as in BEIR.
  EXPECT_EQ(read_qrels(write("named.tsv", "qid\tdocid\trel\nq1\td2\t1\n"), queries, corpus).size(), 1u);
  // But a first judgement whose query id is mistyped is a bad record, not a
  // header to drop silently: its score is an integer (hard negatives: its
  // positive is a passage).
  EXPECT_THAT(test::error_of([&] { read_qrels(write("typo.tsv", "q:typo\td2\t1\nq1\td2\t1\n"), queries, corpus); }),
              ::testing::HasSubstr("typo.tsv:1: unknown query id 'q:typo'"));
  EXPECT_THAT(test::error_of([&] { read_hard_negatives(write("hn_typo.tsv", "q:typo\td1\td2\nq1\td1\td2\n"), q, c); }),
              ::testing::HasSubstr("hn_typo.tsv:1:"));
}

// A file with no record, or whose every record was skipped, is refused by
// callers that need records, saying which of the two it is.
TEST_F(Readers, RequireRecordsSaysTheFileIsEmptyOrAllWasSkipped) {
  ReadReport report;
  const auto path = write("empty.jsonl", "");
  EXPECT_EQ(read_beir_corpus(path, {}, &report).size(), 0);
  EXPECT_THAT(test::error_of([&] { require_records(report, path, "passages"); }),
              ::testing::HasSubstr("empty.jsonl: no passages (the file holds no records)"));
  report = {};
  const auto bad = write("bad.jsonl", "{\"_id\": 1}\nnot json\n");
  read_beir_corpus(bad, ReaderOptions().on_bad_record(OnBadRecord::Skip), &report);
  EXPECT_THAT(test::error_of([&] { require_records(report, bad, "passages"); }),
              ::testing::HasSubstr("bad.jsonl: no passages: all 2 records were skipped as bad (first: "));
  report = {};
  read_beir_corpus(write("ok.jsonl", kCorpus), {}, &report);
  EXPECT_NO_THROW(require_records(report, "ok.jsonl", "passages"));
}

// A UTF-8 byte order mark (Windows editors write one) is not part of the
// first record, in JSONL and in TSV files.
TEST_F(Readers, AByteOrderMarkIsSkipped) {
  const std::string bom = "\xEF\xBB\xBF";
  const auto corpus = read_beir_corpus(write("corpus.jsonl", bom + kCorpus));
  ASSERT_EQ(corpus.size(), 3);
  EXPECT_EQ(corpus.id(0), "d1");
  const auto queries = read_beir_queries(write("q.jsonl", bom + "{\"_id\": \"q1\", \"text\": \"a\"}\n"));
  EXPECT_EQ(queries.id(0), "q1");
  EXPECT_EQ(read_qrels(write("bom.tsv", bom + "q1\td2\t1\n"), queries, corpus).size(), 1u);
  EXPECT_EQ(read_qrels(write("bomh.tsv", bom + "query-id\tcorpus-id\tscore\nq1\td2\t1\n"), queries, corpus).size(), 1u);
}

const char* kDprRecord1 =
    "{\"question\": \"who?\", \"answers\": [\"x\"], \"positive_ctxs\": [{\"title\": \"P\", \"text\": \"pos one\", "
    "\"passage_id\": \"11\"}], \"negative_ctxs\": [{\"title\": \"N\", \"text\": \"rand\", \"passage_id\": 12}], "
    "\"hard_negative_ctxs\": [{\"title\": \"H\", \"text\": \"hard\", \"passage_id\": \"13\"}, {\"text\": \"no id\"}]}";
const char* kDprRecord2 =
    "{\"question\": \"what?\", \"positive_ctxs\": [{\"title\": \"H\", \"text\": \"hard\", \"passage_id\": \"13\"}]}";

void expect_dpr(const TrainingSet& set) {
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.queries().text(set.query(0)), "who?");
  EXPECT_EQ(set.passages().full_text(set.positives(0)[0]), "P pos one");
  ASSERT_EQ(set.hard_negatives(0).size(), 2u);
  EXPECT_EQ(set.passages().text(set.hard_negatives(0)[1]), "no id");
  ASSERT_EQ(set.other_negatives(0).size(), 1u);
  EXPECT_EQ(set.passages().id(set.other_negatives(0)[0]), "12") << "integer passage_id";
  EXPECT_EQ(set.positives(1)[0], set.hard_negatives(0)[0]) << "same passage_id, same row";
  EXPECT_EQ(set.passages().size(), 4);
}

TEST_F(Readers, DprJsonArrayAndJsonlGiveTheSameExamples) {
  expect_dpr(read_dpr(write("dpr.json", std::string("[\n  ") + kDprRecord1 + ",\n  " + kDprRecord2 + "\n]\n")));
  expect_dpr(read_dpr(write("dpr.jsonl", std::string(kDprRecord1) + "\n" + kDprRecord2 + "\n")));
}

TEST_F(Readers, BadDprRecordsNameTheLine) {
  const auto no_pos = std::string("{\"question\": \"q\", \"positive_ctxs\": []}");
  const auto no_text = std::string("{\"question\": \"q\", \"positive_ctxs\": [{\"title\": \"t\"}]}");
  for (const auto& [record, problem] :
       std::vector<std::pair<std::string, std::string>>{{no_pos, "'positive_ctxs' is empty"},
                                                        {no_text, "positive_ctxs[0]: missing field 'text'"},
                                                        {"{\"positive_ctxs\": []}", "missing field 'question'"}}) {
    const auto jsonl = write("bad.jsonl", std::string(kDprRecord2) + "\n" + record + "\n");
    EXPECT_THAT(error_of([&] { read_dpr(jsonl); }), ::testing::HasSubstr(jsonl + ":2: " + problem));
    const auto array = write("bad.json", std::string("[\n") + kDprRecord2 + ",\n" + record + "\n]");
    EXPECT_THAT(error_of([&] { read_dpr(array); }), ::testing::HasSubstr(array + ":3: " + problem));
  }
  const auto broken = write("broken.json", std::string("[\n") + kDprRecord2 + ",\n{\"question\": \n");
  EXPECT_THAT(error_of([&] { read_dpr(broken); }), ::testing::HasSubstr(broken + ":"));
}

TEST_F(Readers, TsvTuples) {
  const auto set = read_tsv_tuples(write("t.tsv", "q one\tpos one\tneg a\tneg b\nq two\tpos two\n"));
  ASSERT_EQ(set.size(), 2);
  EXPECT_EQ(set.queries().text(set.query(1)), "q two");
  EXPECT_EQ(set.passages().text(set.positives(0)[0]), "pos one");
  EXPECT_EQ(set.hard_negatives(0).size(), 2u);
  EXPECT_TRUE(set.hard_negatives(1).empty());
  const auto bad = write("b.tsv", "q\tp\nlonely\n");
  EXPECT_THAT(error_of([&] { read_tsv_tuples(bad); }), ::testing::HasSubstr(bad + ":2: expected at least 2"));
  const auto empty = write("e.tsv", "q\t \n");
  EXPECT_THAT(error_of([&] { read_tsv_tuples(empty); }), ::testing::HasSubstr(empty + ":1: field 2 is empty"));
}

TEST(DebpkgData, LoadsEndToEnd) {
  const std::string root = std::string(CONTACCUM_TEST_DIR) + "/../../shared/data/debpkg/";
  if (!fs::exists(root + "corpus.jsonl")) GTEST_SKIP() << "no ../shared/data/debpkg";
  // The shipped files repeat one package (d:openjdk-17-jre, corpus lines 39031
  // and 39032; q:openjdk-17-jre, query lines 17546 and 33098): strict reading
  // refuses that, skipping keeps the first of each.
  EXPECT_THAT([&] { read_beir_corpus(root + "corpus.jsonl"); },
              ::testing::ThrowsMessage<c10::Error>(
                  ::testing::HasSubstr("corpus.jsonl:39032: duplicate _id 'd:openjdk-17-jre'")));
  ReadReport report;
  auto corpus = std::make_shared<TextTable>(
      read_beir_corpus(root + "corpus.jsonl", ReaderOptions().on_bad_record(OnBadRecord::Skip), &report));
  EXPECT_EQ(report.skipped, 1);
  auto queries = std::make_shared<TextTable>(
      read_beir_queries(root + "queries.jsonl", ReaderOptions().on_bad_record(OnBadRecord::Skip), &report));
  EXPECT_EQ(report.skipped, 1);
  EXPECT_THAT(report.problems.at(0), ::testing::HasSubstr("queries.jsonl:33098: duplicate _id 'q:openjdk-17-jre'"));
  EXPECT_EQ(corpus->size(), 55090);
  EXPECT_EQ(queries->size(), 50090);
  EXPECT_EQ(read_qrels(root + "qrels/dev.tsv", *queries, *corpus).size(), 2000u);
  const auto train = read_hard_negatives(root + "train-hard-negatives.tsv", queries, corpus);
  EXPECT_EQ(train.size(), 48091);
  const auto dpr = read_dpr(root + "dpr-train.jsonl");
  EXPECT_EQ(dpr.size(), 8000);
  EXPECT_EQ(dpr.hard_negatives(0).size(), 2u);
}

}  // namespace
}  // namespace contaccum
