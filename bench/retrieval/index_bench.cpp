// Vector indexes side by side on one data set: exact search, then each FAISS
// index type at several search settings, all searching the same encoded dev
// queries in the same process. Prints one JSON object per line: build
// seconds, index memory, queries/s, recall@10 and recall@100 against exact
// search, and the retrieval metrics. bench/retrieval/run.sh turns the lines
// into docs/RETRIEVAL.md's index table.
//
//   contaccum_bench_index --model DIR --corpus C --queries Q --qrels R --embeddings EMB [--threads N] [--repeats N]
//   (bad records are skipped)
#include <contaccum/contaccum.h>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

using namespace contaccum;

namespace {

constexpr int64_t kDepth = 100;

// Share of the exact top `k` found in the top `k` of `got`, over all queries.
double recall_at(const SearchResult& got, const SearchResult& exact, int64_t k) {
  int64_t found = 0;
  const auto g = got.indices.slice(1, 0, k).contiguous(), e = exact.indices.slice(1, 0, k).contiguous();
  for (int64_t q = 0; q < e.size(0); ++q) {
    const auto* gq = g.data_ptr<int64_t>() + q * k;
    const auto* eq = e.data_ptr<int64_t>() + q * k;
    for (int64_t i = 0; i < k; ++i) found += std::find(gq, gq + k, eq[i]) != gq + k ? 1 : 0;
  }
  return static_cast<double>(found) / static_cast<double>(e.size(0) * k);
}

// Best of `repeats` timings of `fn` (the least disturbed run).
template <typename Fn>
std::pair<double, SearchResult> timed(int repeats, Fn&& fn) {
  double best = 1e300;
  SearchResult result;
  for (int i = 0; i < repeats; ++i) {
    const Stopwatch watch;
    result = fn();
    best = std::min(best, watch.seconds());
  }
  return {best, result};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("exact search against FAISS flat / IVF / HNSW indexes over a corpus's embeddings");
  std::map<std::string, std::string> args;
  for (const char* key : {"--model", "--corpus", "--queries", "--qrels", "--embeddings"}) {
    app.add_option(key, args[key])->required();
  }
  int threads = 1, repeats = 3;
  app.add_option("--threads", threads, "search threads")->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "timed repeats of each search (the fastest counts)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  contaccum::set_compute_threads(threads);
  auto model = load_model(args["--model"]);
  // Bad records (debpkg repeats one passage id) are skipped, as the CLI's
  // --skip-bad-records does.
  const auto reader = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  const auto corpus = read_beir_corpus(args["--corpus"], reader);
  const auto queries = read_beir_queries(args["--queries"], reader);
  const auto qrels = read_qrels(args["--qrels"], queries, corpus, reader);
  const auto rows = judged_queries(qrels);
  std::vector<std::string> texts;
  for (const auto r : rows) texts.emplace_back(queries.text(r));
  const auto q = encode_texts(model.model, Tower::Query, texts, model.text_encoder(),
                              model.config.lengths.query_max_length(), 256);
  EmbeddingsReader embeddings(args["--embeddings"]);
  const auto passages = embeddings.read_all();
  const double flops = 2.0 * static_cast<double>(q.size(0)) * static_cast<double>(passages.size(0)) *
                       static_cast<double>(passages.size(1));

  auto report = [&](const std::string& type, const std::string& setting, double build_seconds, int64_t memory,
                    double seconds, const SearchResult& got, const SearchResult& exact) {
    nlohmann::json j = {{"type", type},
                        {"setting", setting},
                        {"passages", passages.size(0)},
                        {"dim", passages.size(1)},
                        {"queries", q.size(0)},
                        {"threads", threads},
                        {"build_seconds", build_seconds},
                        {"memory_bytes", memory},
                        {"search_seconds", seconds},
                        {"queries_per_second", static_cast<double>(q.size(0)) / seconds},
                        {"recall@10", recall_at(got, exact, 10)},
                        {"recall@100", recall_at(got, exact, kDepth)},
                        {"metrics", nlohmann::json::parse(compute_metrics(got, rows, qrels).to_json())}};
    if (type == "exact") j["gflops"] = flops / seconds / 1e9;
    std::cout << j.dump() << std::endl;
  };

  const auto [exact_seconds, exact] =
      timed(repeats, [&] { return exact_search(q, passages, SearchOptions().k(kDepth)); });
  report("exact", "", 0.0, passages.numel() * 4, exact_seconds, exact, exact);

  struct Setting {
    std::string name;
    int64_t value;
  };
  const std::vector<std::pair<IndexType, std::vector<Setting>>> plans = {
      {IndexType::Flat, {{"", 0}}},
      {IndexType::Ivf, {{"nprobe", 1}, {"nprobe", 8}, {"nprobe", 32}, {"nprobe", 128}}},
      {IndexType::Hnsw, {{"ef_search", 100}, {"ef_search", 200}, {"ef_search", 400}}},
  };
  for (const auto& [type, settings] : plans) {
    const Stopwatch build;
    auto index = build_vector_index(embeddings, VectorIndexOptions().type(type));
    const double build_seconds = build.seconds();
    for (const auto& s : settings) {
      if (s.name == "nprobe") index.set_nprobe(s.value);
      if (s.name == "ef_search") index.set_ef_search(s.value);
      const auto [seconds, got] = timed(repeats, [&] { return index.search(q, kDepth); });
      const auto setting = s.name.empty() ? std::string() : s.name + " " + std::to_string(s.value);
      const auto label = type == IndexType::Ivf ? "ivf (nlist " + std::to_string(index.options().nlist()) + ")"
                                                : index_type_name(type);
      report(label, setting, build_seconds, index.memory_bytes(), seconds, got, exact);
    }
  }
  return 0;
}
