// Throughput of the text pipeline on a BEIR-layout data set (default: the
// debpkg set in ../shared): reading each file, building a WordPiece vocabulary,
// and tokenizing the corpus. Each measurement is the median of --repeats runs.
//
//   contaccum_bench_text_pipeline [DATA_DIR] [--repeats N]
#include <contaccum/data/readers.h>
#include <contaccum/text/vocab_builder.h>
#include <contaccum/text/wordpiece_tokenizer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace contaccum;

namespace {

template <typename Fn>
double median_seconds(int repeats, Fn&& fn) {
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double megabytes(const std::string& path) {
  return static_cast<double>(std::filesystem::file_size(path)) / (1024.0 * 1024.0);
}

void row(const char* what, double seconds, double mb, double items, const char* unit) {
  std::printf("| %-34s | %8.3f | %9.1f | %12.0f %s/s |\n", what, seconds, mb > 0 ? mb / seconds : 0.0, items / seconds,
              unit);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "../shared/data/debpkg";
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else {
      dir = arg;
    }
  }
  const std::string corpus_path = dir + "/corpus.jsonl", queries_path = dir + "/queries.jsonl";
  if (!std::filesystem::exists(corpus_path)) {
    std::fprintf(stderr, "no %s (pass the data directory as the first argument)\n", corpus_path.c_str());
    return 2;
  }
  // The debpkg files repeat one package; skip such records rather than stop.
  const auto lenient = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  std::printf("data: %s, median of %d runs\n\n", dir.c_str(), repeats);
  std::printf("| %-34s | %8s | %9s | %18s |\n", "step", "seconds", "MB/s", "throughput");
  std::printf("|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(10, '-').c_str(),
              std::string(11, '-').c_str(), std::string(20, '-').c_str());

  std::shared_ptr<TextTable> corpus, queries;
  const double t_corpus =
      median_seconds(repeats, [&] { corpus = std::make_shared<TextTable>(read_beir_corpus(corpus_path, lenient)); });
  row("read corpus.jsonl", t_corpus, megabytes(corpus_path), static_cast<double>(corpus->size()), "passages");
  const double t_queries =
      median_seconds(repeats, [&] { queries = std::make_shared<TextTable>(read_beir_queries(queries_path, lenient)); });
  row("read queries.jsonl", t_queries, megabytes(queries_path), static_cast<double>(queries->size()), "queries");
  const auto hn_path = dir + "/train-hard-negatives.tsv";
  if (std::filesystem::exists(hn_path)) {
    int64_t n = 0;
    const double t = median_seconds(repeats, [&] { n = read_hard_negatives(hn_path, queries, corpus).size(); });
    row("read train-hard-negatives.tsv", t, megabytes(hn_path), static_cast<double>(n), "examples");
  }
  const auto dpr_path = dir + "/dpr-train.jsonl";
  if (std::filesystem::exists(dpr_path)) {
    int64_t n = 0;
    const double t = median_seconds(repeats, [&] { n = read_dpr(dpr_path).size(); });
    row("read dpr-train.jsonl", t, megabytes(dpr_path), static_cast<double>(n), "examples");
  }

  std::vector<std::string> texts;
  double text_mb = 0;
  for (int64_t i = 0; i < corpus->size(); ++i) {
    texts.push_back(corpus->full_text(i));
    text_mb += static_cast<double>(texts.back().size()) / (1024.0 * 1024.0);
  }
  Vocabulary vocab;
  const double t_vocab =
      median_seconds(1, [&] { vocab = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(30522)); });
  row("build WordPiece vocab (30522)", t_vocab, text_mb, static_cast<double>(vocab.size()), "tokens");

  WordPieceTokenizer tokenizer(vocab, WordPieceTokenizerOptions().max_length(1 << 20));
  int64_t tokens = 0;
  const double t_tok = median_seconds(repeats, [&] {
    tokens = 0;
    for (const auto& t : texts) tokens += static_cast<int64_t>(tokenizer.encode(t).size());
  });
  row("tokenize corpus (no truncation)", t_tok, text_mb, static_cast<double>(tokens), "tokens");
  const double t_batch = median_seconds(repeats, [&] {
    for (size_t b = 0; b < texts.size(); b += 128) {
      std::vector<std::string> chunk(texts.begin() + b, texts.begin() + std::min(texts.size(), b + 128));
      tokenizer.encode_batch(chunk, 256);
    }
  });
  row("encode_batch corpus (128/batch, 256)", t_batch, text_mb, static_cast<double>(texts.size()), "passages");
  return 0;
}
