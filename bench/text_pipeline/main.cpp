// Throughput of the text pipeline on a BEIR-layout data set (default: the
// debpkg set in ../shared): reading each file, building a WordPiece vocabulary,
// and tokenizing the corpus. Each measurement is the median of --repeats runs
// (the vocabulary build, the slowest step, runs --vocab-repeats times).
// Prints a Markdown table on stdout; bench/run_text_pipeline.sh turns it into
// docs/TEXT_PIPELINE.md.
//
//   contaccum_bench_text_pipeline [DATA_DIR] [--repeats N] [--vocab-repeats N] [--vocab-size N]
#include <contaccum/core/stopwatch.h>
#include <contaccum/data/readers.h>
#include <contaccum/text/vocab_builder.h>
#include <contaccum/text/wordpiece_tokenizer.h>

#include <ATen/Parallel.h>

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
    const Stopwatch watch;
    fn();
    times.push_back(watch.seconds());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double megabytes(const std::string& path) { return static_cast<double>(std::filesystem::file_size(path)) / 1e6; }

std::string with_commas(double value) {
  std::string digits = std::to_string(static_cast<long long>(value + 0.5));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

// One table row: what, input size, how many items, median seconds, MB/s and
// items/s.
void row(const std::string& what, double mb, double items, const char* unit, double seconds) {
  std::printf("| %s | %.1f MB | %s %s | %.3f | %.1f | %s %s/s |\n", what.c_str(), mb, with_commas(items).c_str(), unit,
              seconds, mb / seconds, with_commas(items / seconds).c_str(), unit);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "../shared/data/debpkg";
  int repeats = 5, vocab_repeats = 1;
  int64_t vocab_size = 30522;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--vocab-repeats" && i + 1 < argc) {
      vocab_repeats = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--vocab-size" && i + 1 < argc) {
      vocab_size = std::max(16, std::atoi(argv[++i]));
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "usage: %s [DATA_DIR] [--repeats N] [--vocab-repeats N] [--vocab-size N]\n", argv[0]);
      return 2;
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
  std::printf(
      "Data: `%s`. Median of %d runs (vocabulary: %d); %d intra-op threads "
      "(`encode_batch` uses them; everything else runs on one thread). MB = 10^6 bytes.\n\n",
      dir.c_str(), repeats, vocab_repeats, at::get_num_threads());
  std::printf("| step | input | items | seconds | MB/s | throughput |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");

  std::shared_ptr<TextTable> corpus, queries;
  ReadReport report;
  const double t_corpus = median_seconds(
      repeats, [&] { corpus = std::make_shared<TextTable>(read_beir_corpus(corpus_path, lenient, &report)); });
  row("read `corpus.jsonl`", megabytes(corpus_path), static_cast<double>(corpus->size()), "passages", t_corpus);
  const int64_t corpus_skipped = report.skipped;
  const double t_queries = median_seconds(
      repeats, [&] { queries = std::make_shared<TextTable>(read_beir_queries(queries_path, lenient, &report)); });
  row("read `queries.jsonl`", megabytes(queries_path), static_cast<double>(queries->size()), "queries", t_queries);
  const int64_t queries_skipped = report.skipped;
  for (const char* split : {"train", "dev"}) {
    const auto path = dir + "/qrels/" + split + ".tsv";
    if (!std::filesystem::exists(path)) continue;
    int64_t n = 0;
    const double t = median_seconds(repeats, [&] { n = read_qrels(path, *queries, *corpus).size(); });
    row(std::string("read `qrels/") + split + ".tsv`", megabytes(path), static_cast<double>(n), "judgements", t);
  }
  const auto hn_path = dir + "/train-hard-negatives.tsv";
  if (std::filesystem::exists(hn_path)) {
    int64_t n = 0;
    const double t = median_seconds(repeats, [&] { n = read_hard_negatives(hn_path, queries, corpus).size(); });
    row("read `train-hard-negatives.tsv`", megabytes(hn_path), static_cast<double>(n), "examples", t);
  }
  const auto dpr_path = dir + "/dpr-train.jsonl";
  if (std::filesystem::exists(dpr_path)) {
    int64_t n = 0;
    const double t = median_seconds(repeats, [&] { n = read_dpr(dpr_path).size(); });
    row("read `dpr-train.jsonl`", megabytes(dpr_path), static_cast<double>(n), "examples", t);
  }

  std::vector<std::string> texts;
  double text_mb = 0;
  for (int64_t i = 0; i < corpus->size(); ++i) {
    texts.push_back(corpus->full_text(i));
    text_mb += static_cast<double>(texts.back().size()) / 1e6;
  }
  Vocabulary vocab;
  const double t_vocab = median_seconds(
      vocab_repeats, [&] { vocab = train_wordpiece_vocabulary(texts, WordPieceTrainerOptions(vocab_size)); });
  row("build WordPiece vocabulary (" + std::to_string(vocab_size) + ") from the corpus", text_mb,
      static_cast<double>(texts.size()), "passages", t_vocab);

  WordPieceTokenizer tokenizer(vocab, WordPieceTokenizerOptions().max_length(1 << 20));
  int64_t tokens = 0;
  const double t_tok = median_seconds(repeats, [&] {
    tokens = 0;
    for (const auto& t : texts) tokens += static_cast<int64_t>(tokenizer.encode(t).size());
  });
  row("tokenize corpus, `encode` (1 thread, no truncation)", text_mb, static_cast<double>(tokens), "tokens", t_tok);
  const double t_batch = median_seconds(repeats, [&] {
    for (size_t b = 0; b < texts.size(); b += 128) {
      std::vector<std::string> chunk(texts.begin() + static_cast<std::ptrdiff_t>(b),
                                     texts.begin() + static_cast<std::ptrdiff_t>(std::min(texts.size(), b + 128)));
      tokenizer.encode_batch(chunk, 256);
    }
  });
  row("tokenize corpus, `encode_batch` (128 per batch, max 256)", text_mb, static_cast<double>(texts.size()),
      "passages", t_batch);
  std::printf(
      "\nSkipped (duplicate ids): %lld in corpus.jsonl, %lld in queries.jsonl. "
      "Vocabulary: %lld tokens. Corpus text: %s tokens without truncation.\n",
      static_cast<long long>(corpus_skipped), static_cast<long long>(queries_skipped),
      static_cast<long long>(vocab.size()), with_commas(static_cast<double>(tokens)).c_str());
  return 0;
}
