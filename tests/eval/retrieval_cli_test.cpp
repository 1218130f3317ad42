// The retrieval commands through the real command line: `encode` writes what
// the model computes and `eval --embeddings` scores it as `eval` does; an
// `encode` killed mid-way leaves no embeddings; `search` prints the expected
// ranking (dense, and BM25 through --hybrid-bm25 --weight 0) for arguments
// and standard input; `eval --tune-on` refuses the reported split; `index
// build` + `eval --index` / `search --index`: flat scores exactly as `eval`,
// IVF close to it, an index of another model is refused.
#include "child_processes.h"
#include "test_util.h"
#include "train/train_fixture.h"

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

#ifdef CONTACCUM_CLI
// Runs a shell command line; returns (exit status, stdout).
std::pair<int, std::string> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

class RetrievalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = work_.path / "data";
    build_synthetic_dataset(data_.string(),
                            SyntheticDatasetOptions().seed(4).passages(3000).train_queries(200).dev_queries(100));
    model_ = save_small_model("model", 16);
  }
  // A small model of `width` on the corpus, initialised from `seed`, saved
  // under the work directory as `name`; returns its path.
  std::string save_small_model(const std::string& name, int64_t width, int64_t seed = 0) const {
    TrainConfig config;
    config.data.corpus((data_ / "corpus.jsonl").string());
    config.tokenizer.vocab_size(300);
    config.trainer.seed(seed);
    config.model.encoder_options().set("dim", width);
    config.model.encoder_options().set("embedding_dim", width);
    const auto corpus = read_beir_corpus(config.data.corpus());
    const auto path = (work_.path / name).string();
    save_model(build_model(config, &corpus), path);
    return path;
  }
  std::string cli() const { return std::string(CONTACCUM_CLI); }
  std::string data_args(const std::string& split = "dev") const {
    return " --corpus " + (data_ / "corpus.jsonl").string() + " --queries " + (data_ / "queries.jsonl").string() +
           " --qrels " + (data_ / "qrels" / (split + ".tsv")).string();
  }
  test::TempDir work_;
  fs::path data_;
  std::string model_;
  test::ChildProcesses children_;  // after work_: stopped before it is removed
};

TEST_F(RetrievalCli, EncodeWritesTheModelsEmbeddingsAndEvalScoresThemAlike) {
  const auto emb = (work_.path / "emb").string();
  const auto [status, out] = shell(cli() + " encode --model " + model_ + " --corpus " +
                                   (data_ / "corpus.jsonl").string() + " --output " + emb + " 2>/dev/null");
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["passages"], 3000);
  EmbeddingsReader reader(emb);
  auto model = load_model(model_);
  const auto corpus = read_beir_corpus((data_ / "corpus.jsonl").string());
  std::vector<std::string> texts;
  for (int64_t r = 0; r < 100; ++r) texts.push_back(corpus.full_text(r));
  const auto want = encode_texts(model.model, Tower::Passage, texts, model.text_encoder(),
                                 model.config.lengths.passage_max_length(), 256);
  EXPECT_TRUE(torch::allclose(reader.read(0, 100), want, 1e-6, 1e-6));
  EXPECT_EQ(reader.ids()[7], std::string(corpus.id(7)));
  const auto plain = shell(cli() + " eval --model " + model_ + data_args() + " 2>/dev/null");
  const auto from_file =
      shell(cli() + " eval --model " + model_ + data_args() + " --embeddings " + emb + " 2>/dev/null");
  ASSERT_EQ(plain.first, 0);
  ASSERT_EQ(from_file.first, 0);
  auto a = nlohmann::json::parse(plain.second), b = nlohmann::json::parse(from_file.second);
  a.erase("seconds");
  b.erase("seconds");
  EXPECT_EQ(a, b);

  // A NaN in the file (row 1,234): eval refuses to rank with it.
  const auto npy = fs::path(emb) / "embeddings.npy";
  const auto dim = reader.info().dim;
  const auto offset = static_cast<std::streamoff>(fs::file_size(npy) - 3000 * dim * 4 + (1234 * dim + 5) * 4);
  {
    std::fstream file(npy, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(offset);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    file.write(reinterpret_cast<const char*>(&nan), sizeof nan);
  }
  const auto poisoned = shell(cli() + " eval --model " + model_ + data_args() + " --embeddings " + emb + " 2>&1");
  EXPECT_EQ(poisoned.first, 1);
  EXPECT_THAT(poisoned.second, HasSubstr(npy.string() + ": row 1234 holds a NaN or an infinity"));
}

TEST_F(RetrievalCli, EncodeWithTwoWorkersWritesWhatOneProcessWrites) {
  const auto corpus = (data_ / "corpus.jsonl").string();
  const auto one = (work_.path / "one").string(), two = (work_.path / "two").string();
  const auto base = cli() + " encode --model " + model_ + " --corpus " + corpus + " --batch-size 100";
  ASSERT_EQ(shell(base + " --output " + one + " 2>/dev/null").first, 0);
  const auto [status, out] = shell(base + " --output " + two + " --nproc-per-node 2 2>/dev/null");
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);  // one report, from rank 0
  EXPECT_EQ(j["workers"], 2);
  EmbeddingsReader a(one), b(two);
  EXPECT_EQ(a.ids(), b.ids());
  // Each worker encodes other batches, so BLAS may round a row differently.
  EXPECT_TRUE(torch::allclose(a.read_all(), b.read_all(), 1e-6, 1e-6));
}

TEST_F(RetrievalCli, AnEncodeKilledWhileWritingLeavesNoEmbeddings) {
  const auto emb = work_.path / "emb";
  std::vector<std::string> args = {
      cli(),      "encode",     "--model",      model_, "--corpus", (data_ / "corpus.jsonl").string(),
      "--output", emb.string(), "--batch-size", "1"};
  const pid_t pid = children_.spawn(args);
  ASSERT_NE(pid, 0);
  // Kill it as soon as its temporary directory exists: mid-write.
  bool writing = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!writing && std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : fs::directory_iterator(work_.path)) {
      if (e.path().filename().string().find(".tmp-") != std::string::npos) writing = true;
    }
    if (!writing) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const int status = children_.kill_and_wait(pid, SIGKILL);
  ASSERT_TRUE(writing);
  ASSERT_EQ(status, 128 + SIGKILL) << "encode finished before it could be killed";
  EXPECT_FALSE(fs::exists(emb));
  EXPECT_THAT(test::error_of([&] { EmbeddingsReader reader(emb.string()); }), HasSubstr("no file"));
}

TEST_F(RetrievalCli, SearchPrintsTheRankingForArgumentsAndStandardInput) {
  const auto corpus = read_beir_corpus((data_ / "corpus.jsonl").string());
  const auto queries = read_beir_queries((data_ / "queries.jsonl").string());
  const std::string query(queries.text(0));
  // Dense: the model's own top 3.
  auto model = load_model(model_);
  std::vector<std::string> texts;
  for (int64_t r = 0; r < corpus.size(); ++r) texts.push_back(corpus.full_text(r));
  const auto passages = encode_texts(model.model, Tower::Passage, texts, model.text_encoder(),
                                     model.config.lengths.passage_max_length(), 256);
  const auto q = encode_texts(model.model, Tower::Query, {query}, model.text_encoder(),
                              model.config.lengths.query_max_length(), 1);
  const auto dense = exact_search(q, passages, SearchOptions().k(3));
  const auto base = cli() + " search --model " + model_ + " --corpus " + (data_ / "corpus.jsonl").string() + " --k 3";
  const auto [status, out] = shell(base + " '" + query + "' 2>/dev/null");
  ASSERT_EQ(status, 0) << out;
  std::istringstream lines(out);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "query: " + query);
  for (int64_t j = 0; j < 3; ++j) {
    std::getline(lines, line);
    std::istringstream fields(line);
    int rank;
    std::string id;
    fields >> rank >> id;
    EXPECT_EQ(rank, j + 1);
    EXPECT_EQ(id, std::string(corpus.id(dense.indices[0][j].item<int64_t>()))) << line;
  }
  // BM25 alone (--hybrid-bm25 --weight 0), two queries from standard input.
  BM25Index bm25(corpus);
  const std::string second(queries.text(1));
  const auto want = bm25.search({query, second}, 3);
  const auto piped =
      shell("printf '%s\\n%s\\n' '" + query + "' '" + second + "' | " + base + " --hybrid-bm25 --weight 0 2>/dev/null");
  ASSERT_EQ(piped.first, 0) << piped.second;
  std::istringstream lines2(piped.second);
  for (int qi = 0; qi < 2; ++qi) {
    std::getline(lines2, line);
    EXPECT_EQ(line, "query: " + (qi == 0 ? query : second));
    for (int64_t j = 0; j < 3; ++j) {
      std::getline(lines2, line);
      std::istringstream fields(line);
      int rank;
      std::string id;
      fields >> rank >> id;
      EXPECT_EQ(id, std::string(corpus.id(want.indices[qi][j].item<int64_t>()))) << line;
    }
    std::getline(lines2, line);  // blank
  }
}

TEST_F(RetrievalCli, HybridEvalReportsTheWeightAndRefusesToTuneOnTheReportedSplit) {
  const auto tuned = shell(cli() + " eval --model " + model_ + data_args() + " --hybrid-bm25 --tune-on " +
                           (data_ / "qrels" / "train.tsv").string() + " 2>/dev/null");
  ASSERT_EQ(tuned.first, 0) << tuned.second;
  const auto j = nlohmann::json::parse(tuned.second);
  for (const char* key : {"mrr@10", "top@1", "weight", "fusion", "dense", "bm25", "tuned_on"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_GE(j["mrr@10"].get<double>(), 0.0);
  const auto same = shell(cli() + " eval --model " + model_ + data_args() + " --hybrid-bm25 --tune-on " +
                          (data_ / "qrels" / "dev.tsv").string() + " 2>&1");
  EXPECT_EQ(same.first, 1);
  EXPECT_THAT(same.second, HasSubstr("is the split being reported (--qrels); tune on another split"));

  // A queries file with the dev queries only: the tuning split's judgements
  // are all skipped, and the error says so, with counts, not that no query
  // has a relevant passage.
  std::set<std::string> dev_ids;
  {
    std::ifstream dev(data_ / "qrels" / "dev.tsv");
    std::string line;
    std::getline(dev, line);  // header
    while (std::getline(dev, line)) dev_ids.insert(line.substr(0, line.find('\t')));
  }
  const auto dev_queries = work_.path / "dev-queries.jsonl";
  {
    std::ifstream all(data_ / "queries.jsonl");
    std::ofstream out(dev_queries);
    std::string line;
    while (std::getline(all, line)) {
      if (dev_ids.count(nlohmann::json::parse(line)["_id"].get<std::string>())) out << line << '\n';
    }
  }
  const auto train_qrels = (data_ / "qrels" / "train.tsv").string();
  const auto missing =
      shell(cli() + " eval --model " + model_ + " --corpus " + (data_ / "corpus.jsonl").string() + " --queries " +
            dev_queries.string() + " --qrels " + (data_ / "qrels" / "dev.tsv").string() +
            " --skip-bad-records --hybrid-bm25 --tune-on " + train_qrels + " 2>&1");
  EXPECT_EQ(missing.first, 1);
  EXPECT_THAT(missing.second, HasSubstr("--tune-on " + train_qrels +
                                        ": no query to evaluate: all 200 of its 200 "
                                        "judgements were skipped as bad records (first: "));
  EXPECT_THAT(missing.second, HasSubstr("unknown query id"));
  EXPECT_THAT(missing.second, HasSubstr("are its queries in " + dev_queries.string()));
}
TEST_F(RetrievalCli, IndexBuildThenEvalAndSearchThroughTheIndex) {
  const auto emb = (work_.path / "emb").string(), corpus = (data_ / "corpus.jsonl").string();
  ASSERT_EQ(
      shell(cli() + " encode --model " + model_ + " --corpus " + corpus + " --output " + emb + " 2>/dev/null").first,
      0);
  const auto exact = shell(cli() + " eval --model " + model_ + data_args() + " --run " +
                           (work_.path / "exact.run").string() + " 2>/dev/null");
  ASSERT_EQ(exact.first, 0) << exact.second;
  auto want = nlohmann::json::parse(exact.second);
  want.erase("seconds");
  for (const std::string type : {"flat", "ivf", "hnsw"}) {
    const auto index = (work_.path / ("index-" + type)).string();
    const auto built =
        shell(cli() + " index build --embeddings " + emb + " --type " + type + " --output " + index + " 2>/dev/null");
    ASSERT_EQ(built.first, 0) << built.second;
    const auto info = nlohmann::json::parse(built.second);
    EXPECT_EQ(info["passages"], 3000);
    EXPECT_GT(info["memory_bytes"].get<int64_t>(), 3000 * 16 * 4 - 1) << type;
    const auto run = (work_.path / (type + ".run")).string();
    const auto [status, out] =
        shell(cli() + " eval --model " + model_ + data_args() + " --index " + index + " --run " + run + " 2>/dev/null");
    ASSERT_EQ(status, 0) << out;
    auto got = nlohmann::json::parse(out);
    got.erase("seconds");
    if (type == "flat") {
      EXPECT_EQ(got, want) << "flat is exact search";
      EXPECT_EQ(test::slurp(run), test::slurp(work_.path / "exact.run"));
    } else {
      EXPECT_NEAR(got["mrr@10"].get<double>(), want["mrr@10"].get<double>(), 0.1) << type;
    }
  }
  // search --index flat: the lines of search without an index.
  const auto base = cli() + " search --model " + model_ + " --corpus " + corpus + " --k 5 'tipili patale'";
  const auto plain = shell(base + " 2>/dev/null"),
             indexed = shell(base + " --index " + (work_.path / "index-flat").string() + " 2>/dev/null");
  ASSERT_EQ(indexed.first, 0) << indexed.second;
  EXPECT_EQ(indexed.second, plain.second);
  // An index of another model (other width) is refused naming both.
  const auto other = save_small_model("other", 8);
  const auto refused = shell(cli() + " eval --model " + other + data_args() + " --index " +
                             (work_.path / "index-ivf").string() + " 2>&1");
  EXPECT_EQ(refused.first, 1);
  EXPECT_THAT(refused.second, HasSubstr("the index is 16 wide but the model's embeddings are 8"));
}

// What a hostile probe of the commands found: outputs that would replace
// someone's files, embeddings of another model of the same width, empty
// inputs, and options that fail only after the work.
TEST_F(RetrievalCli, OutputsInputsAndOptionsThatWouldLoseOrMisreadDataAreRefused) {
  const auto corpus = (data_ / "corpus.jsonl").string(), emb = (work_.path / "emb").string();
  const auto encode = [&](const std::string& model, const std::string& out) {
    return shell(cli() + " encode --model " + model + " --corpus " + corpus + " --output " + out + " 2>&1");
  };
  // An --output holding other files is refused and left alone; the model
  // itself too; an earlier embeddings directory is replaced.
  const auto mine = work_.path / "mine";
  fs::create_directories(mine);
  std::ofstream(mine / "keep.txt") << "keep";
  const auto foreign = encode(model_, mine.string());
  EXPECT_EQ(foreign.first, 1);
  EXPECT_THAT(foreign.second, HasSubstr("it exists and is not an embeddings directory (it holds keep.txt)"));
  EXPECT_EQ(test::slurp(mine / "keep.txt"), "keep");
  EXPECT_THAT(encode(model_, model_).second, HasSubstr("is not an embeddings directory (it holds checksums.json"));
  EXPECT_TRUE(fs::exists(fs::path(model_) / "weights.pt"));
  ASSERT_EQ(encode(model_, emb).first, 0);
  ASSERT_EQ(encode(model_, emb).first, 0) << "an embeddings directory may be replaced";
  const auto into_input = shell(cli() + " index build --embeddings " + emb + " --output " + emb + " 2>&1");
  EXPECT_EQ(into_input.first, 1);
  EXPECT_THAT(into_input.second, HasSubstr("is not an index directory (it holds embeddings.npy"));
  const auto data_into_model = shell(cli() + " data synthetic --output " + model_ + " 2>&1");
  EXPECT_EQ(data_into_model.first, 1);
  EXPECT_THAT(data_into_model.second, HasSubstr("is not a data set directory"));
  EXPECT_TRUE(fs::exists(fs::path(model_) / "weights.pt"));
  // Another model of the same width: its embeddings would rank nonsense.
  const auto other = save_small_model("other", 16, /*seed=*/9);
  const auto wrong = shell(cli() + " eval --model " + other + data_args() + " --embeddings " + emb + " 2>&1");
  EXPECT_EQ(wrong.first, 1);
  EXPECT_THAT(wrong.second, HasSubstr("was encoded by other weights"));
  EXPECT_THAT(wrong.second, HasSubstr("encode the corpus again with this model"));
  const auto index = (work_.path / "index").string();
  ASSERT_EQ(shell(cli() + " index build --embeddings " + emb + " --output " + index + " 2>&1").first, 0);
  EXPECT_THAT(shell(cli() + " eval --model " + other + data_args() + " --index " + index + " 2>&1").second,
              HasSubstr("the index was encoded by other weights"));
  EXPECT_EQ(shell(cli() + " eval --model " + model_ + data_args() + " --index " + index + " 2>/dev/null").first, 0);
  for (const auto& source : {" --embeddings " + emb, " --index " + index}) {
    EXPECT_THAT(shell(cli() + " search --model " + other + " --corpus " + corpus + source + " tipili 2>&1").second,
                HasSubstr(source.substr(1) + " was encoded by other weights"));
  }
  // Duplicate passage ids in an embeddings directory are refused.
  {
    const auto dup = (work_.path / "dup").string();
    fs::create_directories(dup);
    for (const char* f : {"embeddings.npy", "info.json"}) fs::copy_file(fs::path(emb) / f, fs::path(dup) / f);
    std::ifstream in(fs::path(emb) / "ids.txt");
    std::ofstream out(fs::path(dup) / "ids.txt");
    std::string line, first;
    for (int row = 0; std::getline(in, line); ++row) {
      if (row == 0) first = line;
      out << (row == 7 ? first : line) << '\n';
    }
  }
  const auto duplicated = shell(cli() + " index build --embeddings " + (work_.path / "dup").string() + " --output " +
                                (work_.path / "dup-index").string() + " 2>&1");
  EXPECT_EQ(duplicated.first, 1);
  EXPECT_THAT(duplicated.second, HasSubstr("' is on rows 0 and 7"));
  EXPECT_THAT(
      shell(cli() + " data synthetic --passages 10000000000 --output " + (work_.path / "huge").string() + " 2>&1")
          .second,
      HasSubstr("--passages: must be in [1, 10000000], got 10000000000"));
  // A training run's directory given as the model: the message points inside.
  fs::create_directories(work_.path / "run");
  fs::copy(model_, work_.path / "run" / "model", fs::copy_options::recursive);
  EXPECT_THAT(
      shell(cli() + " search --model " + (work_.path / "run").string() + " --corpus " + corpus + " x 2>&1").second,
      HasSubstr("it is a training run's directory: give " + (work_.path / "run" / "model").string()));
  // Options that would be ignored are refused.
  EXPECT_THAT(shell(cli() + " eval --model " + model_ + data_args() + " --k1 0.9 2>&1").second,
              HasSubstr("--k1 requires --hybrid-bm25"));
  EXPECT_THAT(shell(cli() + " search --model " + model_ + " --corpus " + corpus + " --weight 0.5 x 2>&1").second,
              HasSubstr("--weight requires --hybrid-bm25"));
  EXPECT_THAT(shell(cli() + " index build --embeddings " + emb + " --type flat --nlist 5 --output " +
                    (work_.path / "flat5").string() + " 2>&1")
                  .second,
              HasSubstr("--nlist applies to --type ivf, not flat"));
  EXPECT_THAT(shell(cli() + " eval --model " + model_ + data_args() + " --index " + index + " --nprobe 3 2>&1").second,
              HasSubstr("--nprobe applies to an ivf index"));
  EXPECT_THAT(
      shell(cli() + " search --model " + model_ + " --corpus " + corpus + " --index " + index + " --ef-search 3 x 2>&1")
          .second,
      HasSubstr("--ef-search applies to an hnsw index"));
  // An empty corpus is named as such, not blamed on the judgements.
  const auto empty = (work_.path / "empty.jsonl").string();
  std::ofstream(empty).close();
  const auto bm25 = shell(cli() + " bm25 --corpus " + empty + " --queries " + (data_ / "queries.jsonl").string() +
                          " --qrels " + (data_ / "qrels" / "dev.tsv").string() + " 2>&1");
  EXPECT_EQ(bm25.first, 1);
  EXPECT_THAT(bm25.second, HasSubstr("empty.jsonl: no passages (the file holds no records)"));
  // Options checked before the work: a run file in a missing directory, a
  // token limit with no room for a token.
  const auto run = shell(cli() + " eval --model " + model_ + data_args() + " --run " +
                         (work_.path / "nowhere" / "x.run").string() + " 2>&1");
  EXPECT_NE(run.first, 0);
  EXPECT_THAT(run.second, HasSubstr("nowhere does not exist"));
  EXPECT_THAT(run.second, ::testing::Not(HasSubstr("mrr@10")));
  EXPECT_THAT(shell(cli() + " eval --model " + model_ + data_args() + " --query-max-length 1 2>&1").second,
              HasSubstr("--query-max-length: must be >= 2 (room for [CLS] and [SEP])"));
  // A query that cannot be read is named by its line; the others are answered.
  const auto searched = shell("printf 'tipili\\na\\377b\\npatale\\n' | " + cli() + " search --model " + model_ +
                              " --corpus " + corpus + " --k 2 2>&1");
  EXPECT_EQ(searched.first, 1);
  EXPECT_THAT(searched.second, HasSubstr("standard input line 2: "));
  EXPECT_THAT(searched.second, HasSubstr("query: patale"));
}
#endif

}  // namespace
}  // namespace contaccum
