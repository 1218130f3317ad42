// End to end on the real debpkg data set (../shared/data/debpkg): every file
// loads with the counts its README gives, a WordPiece vocabulary is learnt
// from part of the corpus, and sampled batches hold the right texts, tokenized.
//
// The expected values do not come from the readers under test: texts and ids
// are re-read straight from the files with std::getline + nlohmann::json
// (only the few rows a check needs), and the hard negatives and qrels TSVs are
// split by hand.
#include "test_util.h"

#include <contaccum/data/batch_loader.h>
#include <contaccum/data/collator.h>
#include <contaccum/data/readers.h>
#include <contaccum/data/sampler.h>
#include <contaccum/text/vocab_builder.h>
#include <contaccum/text/wordpiece_tokenizer.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace contaccum {
namespace {

namespace fs = std::filesystem;

const std::string kDir = CONTACCUM_TEST_DIR "/../../shared/data/debpkg";

// Counts from the data set's README.md (and its build: every line of every
// file is a record). The corpus and the queries repeat one package each
// ("openjdk-17-jre": two entries with different texts), so read leniently
// they keep one row fewer than they have lines.
constexpr int64_t kCorpusLines = 55091;
constexpr int64_t kTrainQueries = 48091;
constexpr int64_t kDevQueries = 2000;
constexpr int64_t kDprRecords = 8000;
constexpr int64_t kDprHardNegatives = 2;
constexpr size_t kMaxMinedNegatives = 8;
const std::string kRepeatedPassage = "d:openjdk-17-jre";
const std::string kRepeatedQuery = "q:openjdk-17-jre";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(s);
  while (std::getline(in, field, sep)) out.push_back(field);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

// Lines of a TSV file after its header, split on tabs.
std::vector<std::vector<std::string>> tsv_rows(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<std::vector<std::string>> rows;
  std::getline(in, line);  // header
  while (std::getline(in, line)) rows.push_back(split(line, '\t'));
  return rows;
}

// `_id` -> text of the first record with that id, for the ids in `wanted`
// only, parsed with nlohmann::json (full text: title + " " + text, or text).
std::unordered_map<std::string, std::string> texts_of(const std::string& path,
                                                      const std::unordered_set<std::string>& wanted) {
  std::unordered_map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  const std::string prefix = "{\"_id\": \"";
  while (std::getline(in, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;  // parsed properly below when wanted
    const auto end = line.find('"', prefix.size());
    const auto id = line.substr(prefix.size(), end - prefix.size());
    if (!wanted.count(id) || out.count(id)) continue;
    const auto record = nlohmann::json::parse(line);
    const std::string title = record.value("title", std::string());
    const std::string text = record.at("text").get<std::string>();
    out.emplace(id, title.empty() ? text : title + " " + text);
  }
  return out;
}

class DebpkgEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kDir + "/corpus.jsonl")) return;
    const auto lenient = ReaderOptions().on_bad_record(OnBadRecord::Skip);
    corpus_ = std::make_shared<TextTable>(read_beir_corpus(kDir + "/corpus.jsonl", lenient, &corpus_report_));
    queries_ = std::make_shared<TextTable>(read_beir_queries(kDir + "/queries.jsonl", lenient, &queries_report_));
    hard_ = std::make_shared<TrainingSet>(
        read_hard_negatives(kDir + "/train-hard-negatives.tsv", queries_, corpus_, {}, &hard_report_));
    hn_rows_ = tsv_rows(kDir + "/train-hard-negatives.tsv");
    qrel_rows_ = tsv_rows(kDir + "/qrels/train.tsv");
  }
  static void TearDownTestSuite() {
    corpus_.reset();
    queries_.reset();
    hard_.reset();
    hn_rows_.clear();
    qrel_rows_.clear();
  }
  void SetUp() override {
    if (!corpus_) GTEST_SKIP() << "no debpkg data set at " << kDir;
  }

  static std::shared_ptr<TextTable> corpus_, queries_;
  static std::shared_ptr<TrainingSet> hard_;
  static ReadReport corpus_report_, queries_report_, hard_report_;
  static std::vector<std::vector<std::string>> hn_rows_, qrel_rows_;
};

std::shared_ptr<TextTable> DebpkgEndToEnd::corpus_, DebpkgEndToEnd::queries_;
std::shared_ptr<TrainingSet> DebpkgEndToEnd::hard_;
ReadReport DebpkgEndToEnd::corpus_report_, DebpkgEndToEnd::queries_report_, DebpkgEndToEnd::hard_report_;
std::vector<std::vector<std::string>> DebpkgEndToEnd::hn_rows_, DebpkgEndToEnd::qrel_rows_;

TEST_F(DebpkgEndToEnd, CorpusAndQueriesLoadWithOneCountedSkipEach) {
  EXPECT_EQ(corpus_report_.lines, kCorpusLines);
  EXPECT_EQ(corpus_report_.skipped, 1);
  ASSERT_EQ(corpus_report_.problems.size(), 1u);
  EXPECT_THAT(corpus_report_.problems[0], ::testing::HasSubstr("corpus.jsonl:39032"));
  EXPECT_THAT(corpus_report_.problems[0], ::testing::HasSubstr("duplicate _id '" + kRepeatedPassage + "'"));
  EXPECT_EQ(corpus_report_.records, kCorpusLines - 1);
  EXPECT_EQ(corpus_->size(), kCorpusLines - 1);
  // The first of the two records is the one kept.
  const auto jdk = corpus_->find(kRepeatedPassage);
  ASSERT_GE(jdk, 0);
  EXPECT_THAT(std::string(corpus_->text(jdk)), ::testing::EndsWith("using Hotspot JIT."));

  // 48,091 training + 2,000 dev query lines; the queries repeat the same package.
  EXPECT_EQ(queries_report_.lines, kTrainQueries + kDevQueries);
  EXPECT_EQ(queries_report_.skipped, 1);
  ASSERT_EQ(queries_report_.problems.size(), 1u);
  EXPECT_THAT(queries_report_.problems[0], ::testing::HasSubstr("queries.jsonl:33098"));
  EXPECT_THAT(queries_report_.problems[0], ::testing::HasSubstr("duplicate _id '" + kRepeatedQuery + "'"));
  EXPECT_EQ(queries_->size(), kTrainQueries + kDevQueries - 1);

  // Rows agree with an independent parse of a spread of records.
  std::unordered_set<std::string> wanted;
  for (int64_t row = 0; row < corpus_->size(); row += 997) wanted.emplace(corpus_->id(row));
  const auto oracle = texts_of(kDir + "/corpus.jsonl", wanted);
  ASSERT_EQ(oracle.size(), wanted.size());
  for (int64_t row = 0; row < corpus_->size(); row += 997) {
    EXPECT_EQ(corpus_->full_text(row), oracle.at(std::string(corpus_->id(row)))) << "row " << row;
    EXPECT_TRUE(corpus_->title(row).empty()) << "debpkg passages have no title";
  }
  // Every id is unique and has its prefix.
  for (int64_t row = 0; row < corpus_->size(); ++row) {
    ASSERT_EQ(corpus_->id(row).substr(0, 2), "d:") << row;
    ASSERT_EQ(corpus_->find(corpus_->id(row)), row);
  }
  for (int64_t row = 0; row < queries_->size(); ++row) ASSERT_EQ(queries_->id(row).substr(0, 2), "q:") << row;
}

TEST_F(DebpkgEndToEnd, QrelsNameOnePassagePerQuery) {
  ReadReport train_report, dev_report;
  const auto train = read_qrels(kDir + "/qrels/train.tsv", *queries_, *corpus_, {}, &train_report);
  const auto dev = read_qrels(kDir + "/qrels/dev.tsv", *queries_, *corpus_, {}, &dev_report);
  EXPECT_EQ(train_report.lines, kTrainQueries + 1);
  EXPECT_EQ(train_report.skipped, 0);
  ASSERT_EQ(static_cast<int64_t>(train.size()), kTrainQueries);
  ASSERT_EQ(static_cast<int64_t>(dev.size()), kDevQueries);
  EXPECT_EQ(dev_report.skipped, 0);
  ASSERT_EQ(qrel_rows_.size(), train.size());
  for (size_t i = 0; i < train.size(); ++i) {
    ASSERT_EQ(qrel_rows_[i].size(), 3u);
    ASSERT_EQ(queries_->id(train[i].query), qrel_rows_[i][0]) << "qrels line " << i + 2;
    ASSERT_EQ(corpus_->id(train[i].passage), qrel_rows_[i][1]) << "qrels line " << i + 2;
    ASSERT_EQ(train[i].score, 1);
    // The data set pairs q:<package> with d:<package>.
    ASSERT_EQ(qrel_rows_[i][0].substr(2), qrel_rows_[i][1].substr(2));
  }
  std::set<int64_t> train_queries, dev_queries;
  for (const auto& q : train) train_queries.insert(q.query);
  for (const auto& q : dev) {
    EXPECT_EQ(q.score, 1);
    EXPECT_EQ(queries_->id(q.query).substr(2), corpus_->id(q.passage).substr(2));
    dev_queries.insert(q.query);
  }
  // The repeated query has two (identical) training judgements.
  EXPECT_EQ(static_cast<int64_t>(train_queries.size()), kTrainQueries - 1);
  EXPECT_EQ(static_cast<int64_t>(dev_queries.size()), kDevQueries);
  for (const auto q : dev_queries) EXPECT_EQ(train_queries.count(q), 0u) << "dev query also in train";
  EXPECT_EQ(static_cast<int64_t>(train_queries.size() + dev_queries.size()), queries_->size());

  const auto set = training_set_from_qrels(queries_, corpus_, train);
  EXPECT_EQ(set.size(), kTrainQueries - 1);
  for (int64_t i = 0; i < set.size(); ++i) ASSERT_TRUE(set.hard_negatives(i).empty());
}

TEST_F(DebpkgEndToEnd, HardNegativesAndDprRecordsMatchTheFiles) {
  EXPECT_EQ(hard_report_.skipped, 0);
  ASSERT_EQ(hard_->size(), kTrainQueries);
  ASSERT_EQ(static_cast<int64_t>(hn_rows_.size()), kTrainQueries);
  int64_t self_references = 0;
  for (int64_t i = 0; i < hard_->size(); ++i) {
    const auto& row = hn_rows_[static_cast<size_t>(i)];
    ASSERT_EQ(row.size(), 3u);
    ASSERT_EQ(queries_->id(hard_->query(i)), row[0]);
    ASSERT_EQ(hard_->positives(i).size(), 1u);
    ASSERT_EQ(corpus_->id(hard_->positives(i)[0]), row[1]);
    // The file's list in its order, less the positive (the two openjdk lines
    // list their own positive among the negatives).
    std::vector<std::string> expected;
    for (const auto& id : split(row[2], ',')) {
      if (id == row[1]) {
        ++self_references;
      } else {
        expected.push_back(id);
      }
    }
    ASSERT_LE(split(row[2], ',').size(), kMaxMinedNegatives);
    std::vector<std::string> got;
    for (const auto n : hard_->hard_negatives(i)) got.emplace_back(corpus_->id(n));
    ASSERT_EQ(got, expected) << "line " << i + 2;
  }
  EXPECT_EQ(self_references, 2);

  ReadReport dpr_report;
  const auto dpr = read_dpr(kDir + "/dpr-train.jsonl", {}, &dpr_report);
  EXPECT_EQ(dpr_report.skipped, 0);
  EXPECT_EQ(dpr_report.lines, kDprRecords);
  ASSERT_EQ(dpr.size(), kDprRecords);
  // DPR record i is training query i: same question, its qrel's passage as
  // the positive, the first two mined negatives as hard negatives, and the
  // corpus' texts.
  std::set<int64_t> distinct_passages;
  for (int64_t i = 0; i < dpr.size(); ++i) {
    const auto& hn = hn_rows_[static_cast<size_t>(i)];
    const auto query_row = queries_->find(hn[0]);
    ASSERT_EQ(dpr.queries().text(dpr.query(i)), queries_->text(query_row)) << "record " << i;
    ASSERT_EQ(dpr.positives(i).size(), 1u);
    const auto positive = dpr.positives(i)[0];
    ASSERT_EQ(dpr.passages().id(positive), qrel_rows_[static_cast<size_t>(i)][1]) << "record " << i;
    ASSERT_EQ(dpr.passages().text(positive), corpus_->text(corpus_->find(hn[1])));
    ASSERT_EQ(dpr.hard_negatives(i).size(), static_cast<size_t>(kDprHardNegatives));
    const auto mined = split(hn[2], ',');
    for (int64_t k = 0; k < kDprHardNegatives; ++k) {
      const auto row = dpr.hard_negatives(i)[static_cast<size_t>(k)];
      ASSERT_EQ(dpr.passages().id(row), mined[static_cast<size_t>(k)]) << "record " << i;
      ASSERT_EQ(dpr.passages().text(row), corpus_->text(corpus_->find(mined[static_cast<size_t>(k)])));
      distinct_passages.insert(row);
    }
    ASSERT_TRUE(dpr.other_negatives(i).empty());
    distinct_passages.insert(positive);
  }
  // Passages shared between records are stored once.
  EXPECT_EQ(static_cast<int64_t>(distinct_passages.size()), dpr.passages().size());
  EXPECT_LT(dpr.passages().size(), kDprRecords * (1 + kDprHardNegatives));
}

// Checks one padded EncoderInput: shape, [CLS] ... [SEP] then padding, mask
// a prefix of ones, token types zero. Returns each row's real ids.
std::vector<std::vector<int64_t>> rows_of(const EncoderInput& in, int64_t rows, int64_t max_length,
                                          const WordPieceTokenizer& tok) {
  std::vector<std::vector<int64_t>> out;
  EXPECT_EQ(in.input_ids.dim(), 2);
  EXPECT_EQ(in.input_ids.size(0), rows);
  EXPECT_LE(in.input_ids.size(1), max_length);
  EXPECT_EQ(in.input_ids.scalar_type(), torch::kLong);
  EXPECT_TRUE(in.attention_mask.sizes().equals(in.input_ids.sizes()));
  EXPECT_TRUE(in.extras.at("token_type_ids").sizes().equals(in.input_ids.sizes()));
  EXPECT_EQ(in.extras.at("token_type_ids").abs().sum().item<int64_t>(), 0);
  const auto ids = in.input_ids.contiguous();
  const auto mask = in.attention_mask.contiguous();
  const int64_t width = ids.size(1);
  int64_t longest = 0;
  for (int64_t r = 0; r < ids.size(0); ++r) {
    const int64_t* id = ids[r].data_ptr<int64_t>();
    const int64_t* m = mask[r].data_ptr<int64_t>();
    int64_t length = 0;
    while (length < width && m[length] == 1) ++length;
    for (int64_t j = length; j < width; ++j) {
      EXPECT_EQ(m[j], 0) << "mask is not a prefix of ones, row " << r;
      EXPECT_EQ(id[j], tok.pad_id()) << "row " << r << " position " << j;
    }
    EXPECT_GE(length, 2) << "row " << r;
    if (length >= 2) {
      EXPECT_EQ(id[0], tok.cls_id());
      EXPECT_EQ(id[length - 1], tok.sep_id());
    }
    longest = std::max(longest, length);
    out.emplace_back(id, id + length);
  }
  EXPECT_EQ(longest, width) << "padded to the longest row, not further";
  return out;
}

TEST_F(DebpkgEndToEnd, BatchesHoldTheQrelPositivesAndTheFileHardNegativesTokenized) {
  // A vocabulary learnt from the first 4,000 passages (about a fourteenth of
  // the corpus) and their queries keeps the test fast.
  constexpr int64_t kVocabSize = 6000, kSubset = 4000;
  std::vector<std::string> texts;
  for (int64_t row = 0; row < kSubset; ++row) texts.push_back(corpus_->full_text(row));
  for (int64_t row = 0; row < kSubset; ++row) texts.emplace_back(queries_->text(row));
  const auto start = std::chrono::steady_clock::now();
  const auto vocab = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(kVocabSize));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0) << "vocabulary training on " << texts.size() << " texts";
  ASSERT_EQ(vocab.size(), kVocabSize);
  EXPECT_EQ(vocab.token(0), "[PAD]");
  EXPECT_EQ(vocab.token(3), "[SEP]");
  EXPECT_TRUE(vocab.contains("package")) << "a frequent word is a token of its own";
  const WordPieceTokenizer tok(vocab);

  constexpr int64_t kBatch = 32, kH = 3, kQueryMax = 24, kPassageMax = 64, kBatches = 4;
  const auto options = SamplerOptions(kBatch).hard_negatives(kH).seed(20240611);
  const auto encode = [&tok](const std::vector<std::string>& t, int64_t max_length) {
    return tok.encode_batch(t, max_length);
  };
  const auto collator_options = CollatorOptions().query_max_length(kQueryMax).passage_max_length(kPassageMax);
  std::shared_ptr<const TrainingSet> set = hard_;
  TrainingSampler expected_sampler(set, options);
  EXPECT_EQ(expected_sampler.batches_per_epoch(), kTrainQueries / kBatch);
  BatchLoader loader(TrainingSampler(set, options), Collator(encode, collator_options), 2, kBatches);

  // Independent truth: query id -> the passage its qrel names, and query id
  // -> the negative ids the hard-negatives file lists.
  std::unordered_map<std::string, std::string> qrel_of;
  for (const auto& r : qrel_rows_) qrel_of.emplace(r[0], r[1]);
  std::unordered_map<std::string, std::vector<std::string>> mined_of;
  for (const auto& r : hn_rows_) mined_of.emplace(r[0], split(r[2], ','));

  struct Row {
    std::string query_id, passage_id;
    std::vector<int64_t> ids;
    int64_t max_length;
    bool is_query;
  };
  std::vector<Row> checks;
  std::set<int64_t> seen_examples;
  int64_t batches = 0, unknown = 0, tokens = 0, truncated = 0, fallback = 0;
  while (auto item = loader.next()) {
    ++batches;
    const auto want = expected_sampler.next();
    ASSERT_EQ(item->indices.examples, want.examples) << "the loader hands out the sampler's batches in order";
    ASSERT_EQ(item->indices.passages, want.passages);
    const auto& batch = item->batch;
    ASSERT_EQ(batch.size(), kBatch);
    ASSERT_EQ(batch.hard_negatives, kH);
    const auto qrows = rows_of(batch.queries, kBatch, kQueryMax, tok);
    const auto prows = rows_of(batch.passages, kBatch * (1 + kH), kPassageMax, tok);
    ASSERT_EQ(static_cast<int64_t>(qrows.size()), kBatch);
    ASSERT_EQ(static_cast<int64_t>(prows.size()), kBatch * (1 + kH));
    for (int64_t i = 0; i < kBatch; ++i) {
      const int64_t example = item->indices.examples[static_cast<size_t>(i)];
      seen_examples.insert(example);
      const std::string qid(queries_->id(hard_->query(example)));
      checks.push_back({qid, "", qrows[static_cast<size_t>(i)], kQueryMax, true});
      // The positive row is the passage the query's qrel names.
      ASSERT_TRUE(qrel_of.count(qid)) << qid;
      const int64_t group = i * (1 + kH);
      checks.push_back({qid, qrel_of.at(qid), prows[static_cast<size_t>(group)], kPassageMax, false});
      // Hard negatives: distinct passages from the query's mined list (every
      // sampled example has at least h of them but the rare short lists).
      const auto& mined = mined_of.at(qid);
      std::set<std::string> negatives;
      for (int64_t k = 1; k <= kH; ++k) {
        const int64_t prow = item->indices.passages[static_cast<size_t>(group + k)];
        const std::string pid(corpus_->id(prow));
        EXPECT_NE(pid, qrel_of.at(qid)) << "a negative is never the positive";
        negatives.insert(pid);
        if (std::find(mined.begin(), mined.end(), pid) == mined.end()) {
          ++fallback;
          EXPECT_LT(mined.size(), static_cast<size_t>(kH + 1)) << qid << ": " << pid << " is not a mined negative";
        }
        checks.push_back({qid, pid, prows[static_cast<size_t>(group + k)], kPassageMax, false});
      }
      EXPECT_EQ(negatives.size(), static_cast<size_t>(kH)) << qid;
    }
    for (const auto& r : qrows) {
      tokens += static_cast<int64_t>(r.size());
      unknown += std::count(r.begin(), r.end(), tok.unk_id());
    }
    for (const auto& r : prows) {
      tokens += static_cast<int64_t>(r.size());
      unknown += std::count(r.begin(), r.end(), tok.unk_id());
      truncated += static_cast<int64_t>(r.size()) == kPassageMax;
    }
  }
  ASSERT_EQ(batches, kBatches);
  EXPECT_EQ(static_cast<int64_t>(seen_examples.size()), kBatches * kBatch) << "no example twice in an epoch";
  EXPECT_EQ(fallback, 0) << "the sampled examples all have mined negatives enough";
  EXPECT_GT(truncated, 0) << "some passages are longer than " << kPassageMax << " tokens";
  EXPECT_LT(static_cast<double>(unknown), 0.02 * static_cast<double>(tokens)) << unknown << " [UNK] of " << tokens;

  // Every row decodes to the re-tokenized text of the record it should hold,
  // with texts re-read from the files.
  std::unordered_set<std::string> want_queries, want_passages;
  for (const auto& c : checks)
    (c.is_query ? want_queries : want_passages).insert(c.is_query ? c.query_id : c.passage_id);
  const auto query_text = texts_of(kDir + "/queries.jsonl", want_queries);
  const auto passage_text = texts_of(kDir + "/corpus.jsonl", want_passages);
  for (const auto& c : checks) {
    const auto& text = c.is_query ? query_text.at(c.query_id) : passage_text.at(c.passage_id);
    auto pieces = tok.tokenize(text);
    if (static_cast<int64_t>(pieces.size()) > c.max_length - 2) pieces.resize(static_cast<size_t>(c.max_length - 2));
    pieces.insert(pieces.begin(), "[CLS]");
    pieces.push_back("[SEP]");
    const auto what = c.is_query ? c.query_id : c.query_id + " / " + c.passage_id;
    ASSERT_EQ(tok.ids_to_tokens(c.ids), pieces) << what;
    ASSERT_EQ(c.ids, tok.encode(text, c.max_length)) << what;
  }
}

}  // namespace
}  // namespace contaccum
