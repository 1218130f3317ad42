// Step time, its breakdown and peak memory of every training strategy.
//
//   contaccum_bench_strategies prepare --data DIR --out BATCHES [--total-batch 64,128,...] [--rounds N] ...
//   contaccum_bench_strategies time    --batches BATCHES --encoder boe|transformer [grid options]
//                                      [--device cuda --precision bf16]
//   contaccum_bench_strategies rss     --batches BATCHES --encoder ... --strategy S --total-batch N ...
//
// `prepare` samples and tokenizes debpkg training batches once (so that the
// timed processes neither read text nor train a vocabulary, and the Python
// reference consumes the very same token ids) and writes them as raw int64
// files plus manifest.json. `time` builds one model, AdamW and Strategy per
// configuration and interleaves them: round r runs one optimizer step of
// every configuration of a total batch on batch r (starting one
// configuration later each round), so machine noise hits all of them alike
// and the ratios between them are side by side. `rss` runs one
// configuration alone and reports the process's peak resident memory.
// Results are JSON lines on stdout; bench/run_strategies.sh collects them.
#include <contaccum/contaccum.h>

#include <torch/optim/adamw.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "../bench_util.h"

#include <torch/cuda.h>
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace contaccum;
using json = nlohmann::json;

namespace {

using bench::median;

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

// The largest amount of GPU memory LibTorch's caching allocator handed out
// (what torch.cuda.max_memory_allocated reports); null where this build
// cannot read it (no CUDA headers).
json peak_gpu_mb(const torch::Device& device) {
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);
#else
  (void)device;
  return nullptr;
#endif
}

double current_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

// ---------------------------------------------------------------- batches

void write_raw(const fs::path& path, const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<int64_t>()), static_cast<std::streamsize>(c.numel() * 8));
  TORCH_CHECK(out.good(), "cannot write ", path.string());
}

torch::Tensor read_raw(const fs::path& path, std::vector<int64_t> shape) {
  auto t = torch::empty(shape, torch::kLong);
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot open ", path.string(), " (run `prepare` first)");
  in.read(reinterpret_cast<char*>(t.data_ptr<int64_t>()), static_cast<std::streamsize>(t.numel() * 8));
  TORCH_CHECK(in.gcount() == t.numel() * 8, path.string(), ": expected ", t.numel() * 8, " bytes, read ", in.gcount());
  return t;
}

// Pads (with id 0, mask 0) or cuts to exactly `length` columns.
EncoderInput fixed_width(const EncoderInput& in, int64_t length) {
  EncoderInput out;
  const int64_t have = in.input_ids.size(1);
  if (have >= length) {
    out.input_ids = in.input_ids.slice(1, 0, length).contiguous();
    out.attention_mask = in.attention_mask.slice(1, 0, length).contiguous();
  } else {
    out.input_ids = torch::constant_pad_nd(in.input_ids, {0, length - have}, 0);
    out.attention_mask = torch::constant_pad_nd(in.attention_mask, {0, length - have}, 0);
  }
  return out;
}

int prepare(const std::string& data, const std::string& out_dir, const std::vector<int64_t>& totals, int64_t rounds,
            int64_t vocab_size, int64_t query_length, int64_t passage_length, int64_t hard_negatives) {
  fs::create_directories(out_dir);
  TrainConfig config;
  const bool real = fs::exists(fs::path(data) / "corpus.jsonl");
  std::string dir = data;
  if (!real) {
    dir = (fs::path(out_dir) / "synthetic").string();
    std::cerr << "no corpus.jsonl in " << data << ": using a synthetic data set in " << dir << "\n";
    build_synthetic_dataset(dir);
  }
  const auto reader = ReaderOptions().on_bad_record(OnBadRecord::Skip);
  auto corpus = std::make_shared<TextTable>(read_beir_corpus((fs::path(dir) / "corpus.jsonl").string(), reader));
  auto queries = std::make_shared<TextTable>(read_beir_queries((fs::path(dir) / "queries.jsonl").string(), reader));
  const auto hn = fs::path(dir) / "train-hard-negatives.tsv";
  std::shared_ptr<TrainingSet> set;
  if (fs::exists(hn)) {
    set = std::make_shared<TrainingSet>(read_hard_negatives(hn.string(), queries, corpus, reader));
  } else {
    auto qrels = read_qrels((fs::path(dir) / "qrels" / "train.tsv").string(), *queries, *corpus, reader);
    set = std::make_shared<TrainingSet>(training_set_from_qrels(queries, corpus, qrels));
  }
  config.tokenizer.vocab_size(vocab_size);
  config.lengths.query_max_length(query_length).passage_max_length(passage_length);
  const auto trained = build_model(config, corpus.get());
  Collator collator(trained.text_encoder(),
                    CollatorOptions().query_max_length(query_length).passage_max_length(passage_length));
  json manifest = {{"data", real ? fs::absolute(data).string() : std::string("synthetic")},
                   {"vocab_size", trained.tokenizer->vocab().size()},
                   {"hard_negatives", hard_negatives},
                   {"query_length", query_length},
                   {"passage_length", passage_length},
                   {"rounds", rounds},
                   {"batches", json::object()}};
  for (int64_t total : totals) {
    TrainingSampler sampler(set, SamplerOptions(total).hard_negatives(hard_negatives).seed(17));
    json list = json::array();
    for (int64_t r = 0; r < rounds; ++r) {
      const auto batch = collator(*set, sampler.next());
      const auto q = fixed_width(batch.queries, query_length), p = fixed_width(batch.passages, passage_length);
      const std::string stem = "b" + std::to_string(total) + "_r" + std::to_string(r);
      write_raw(fs::path(out_dir) / (stem + "_q_ids.bin"), q.input_ids);
      write_raw(fs::path(out_dir) / (stem + "_q_mask.bin"), q.attention_mask);
      write_raw(fs::path(out_dir) / (stem + "_p_ids.bin"), p.input_ids);
      write_raw(fs::path(out_dir) / (stem + "_p_mask.bin"), p.attention_mask);
      list.push_back(stem);
    }
    manifest["batches"][std::to_string(total)] = list;
  }
  std::ofstream(fs::path(out_dir) / "manifest.json") << manifest.dump(2) << "\n";
  return 0;
}

struct Batches {
  json manifest;
  fs::path dir;
  // The batches of one total batch, cut to the encoder's sequence lengths.
  std::vector<TrainingBatch> load(int64_t total, int64_t query_length, int64_t passage_length, int64_t count) const {
    const auto key = std::to_string(total);
    TORCH_CHECK(manifest["batches"].contains(key), "no batches of ", total, " in ", dir.string(), "/manifest.json");
    const int64_t h = manifest["hard_negatives"], lq = manifest["query_length"], lp = manifest["passage_length"];
    TORCH_CHECK(query_length <= lq && passage_length <= lp, "sequence lengths ", query_length, "/", passage_length,
                " exceed the prepared ", lq, "/", lp);
    std::vector<TrainingBatch> out;
    for (const auto& stem_json : manifest["batches"][key]) {
      if (static_cast<int64_t>(out.size()) == count) break;
      const std::string stem = stem_json;
      TrainingBatch b;
      b.hard_negatives = h;
      b.queries.input_ids = read_raw(dir / (stem + "_q_ids.bin"), {total, lq}).slice(1, 0, query_length).contiguous();
      b.queries.attention_mask =
          read_raw(dir / (stem + "_q_mask.bin"), {total, lq}).slice(1, 0, query_length).contiguous();
      b.passages.input_ids =
          read_raw(dir / (stem + "_p_ids.bin"), {total * (1 + h), lp}).slice(1, 0, passage_length).contiguous();
      b.passages.attention_mask =
          read_raw(dir / (stem + "_p_mask.bin"), {total * (1 + h), lp}).slice(1, 0, passage_length).contiguous();
      out.push_back(b);
    }
    TORCH_CHECK(static_cast<int64_t>(out.size()) == count, "need ", count, " batches of ", total, ", prepared ",
                out.size());
    return out;
  }
};

Batches open_batches(const std::string& dir) {
  Batches b;
  b.dir = dir;
  std::ifstream in(fs::path(dir) / "manifest.json");
  TORCH_CHECK(in, "cannot open ", dir, "/manifest.json (run `prepare` first)");
  b.manifest = json::parse(in);
  return b;
}

// ---------------------------------------------------------------- models

struct EncoderSpec {
  std::string kind = "boe";
  std::string device = "cpu", precision = "fp32";                    // where and in what the towers run
  int64_t dim = 256, embedding_dim = 256;                            // bag of embeddings
  int64_t hidden = 256, layers = 4, heads = 4, intermediate = 1024;  // transformer
  int64_t query_length = 32, passage_length = 128;
  json to_json() const {
    json j = {{"kind", kind},
              {"query_length", query_length},
              {"passage_length", passage_length},
              {"device", device},
              {"precision", precision}};
    if (kind == "boe") {
      j["dim"] = dim;
      j["embedding_dim"] = embedding_dim;
    } else {
      j["hidden"] = hidden;
      j["layers"] = layers;
      j["heads"] = heads;
      j["intermediate"] = intermediate;
    }
    return j;
  }
};

// Through the library's encoder registry, as the pipeline builds towers.
std::shared_ptr<EncoderModule> make_tower(const EncoderSpec& spec, int64_t vocab) {
  TORCH_CHECK(spec.kind == "boe" || spec.kind == "transformer", "--encoder must be boe or transformer, got ",
              spec.kind);
  const auto& encoder = EncoderRegistry::global().at(spec.kind == "boe" ? "bag_of_embeddings" : "transformer");
  auto settings = EncoderRegistry::global().defaults();
  settings.set("dim", spec.dim);
  settings.set("embedding_dim", spec.embedding_dim);
  settings.set("hidden_size", spec.hidden);
  settings.set("layers", spec.layers);
  settings.set("heads", spec.heads);
  settings.set("intermediate_size", spec.intermediate);
  settings.set("dropout", 0.1);
  TowerContext context;
  context.vocab_size = vocab;
  context.max_positions = std::max(spec.query_length, spec.passage_length);
  return encoder.make_tower(settings, context);
}

struct Config {
  std::string strategy;
  int64_t total = 0, micro = 0, memory = 0;
  StrategyOptions options() const { return StrategyOptions::from_preset(strategy, total, micro, memory); }
};

// One configuration's model, optimizer and strategy, and its measurements.
struct Runner {
  Config config;
  DualEncoder model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<Strategy> strategy;
  // With fp16: the library's whole step, for its loss scaler.
  std::unique_ptr<TrainingStep> scaled_step;
  torch::Device device = torch::kCPU;
  std::vector<double> step, encode, loss, optimizer_seconds;

  Runner(Config c, const EncoderSpec& spec, int64_t vocab) : config(std::move(c)) {
    torch::manual_seed(0);
    model = DualEncoder(make_tower(spec, vocab), make_tower(spec, vocab));
    device = resolve_device(spec.device);
    model->to(device);
    model->train();
    optimizer = make_adamw(*model, AdamWSetup().lr(1e-4));
    const auto precision = enum_value<Precision>(spec.precision, "--precision");
    strategy = std::make_unique<Strategy>(model, config.options().precision(precision));
    if (precision == Precision::Fp16) scaled_step = std::make_unique<TrainingStep>(model, *strategy, *optimizer);
  }

  // Waits for the device's queued work (a GPU runs asynchronously).
  void synchronize() const {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  }

  void run(const TrainingBatch& batch, bool record) {
    const Stopwatch step_watch;
    StepStats stats;
    double opt = 0.0;
    if (scaled_step) {
      const auto result = scaled_step->run(batch, 1);
      stats = result.stats;
      opt = result.optimizer_seconds;
    } else {
      zero_gradients(*optimizer);
      stats = strategy->compute_gradients(batch);
      const Stopwatch optimizer_watch;
      torch::nn::utils::clip_grad_norm_(model->parameters(), 2.0);
      optimizer->step();
      synchronize();
      opt = optimizer_watch.seconds();
    }
    synchronize();
    const double total = step_watch.seconds();
    TORCH_CHECK(std::isfinite(stats.loss), config.strategy, ": non-finite loss");
    if (!record) return;
    step.push_back(total);
    encode.push_back(stats.encode_seconds);
    loss.push_back(stats.loss_seconds);
    optimizer_seconds.push_back(opt);
  }

  json result(const EncoderSpec& spec) const {
    const double ms = 1e3 * median(step), enc = 1e3 * median(encode);
    return {{"impl", "cpp"},
            {"encoder", spec.kind},
            {"encoder_shape", spec.to_json()},
            {"strategy", config.strategy},
            {"total_batch", config.total},
            {"micro_batch", config.micro},
            {"memory_size", config.memory},
            {"ms_per_step", ms},
            {"ms_steps",
             [&] {
               std::vector<double> v;
               for (double s : step) v.push_back(1e3 * s);
               return v;
             }()},
            {"encode_ms", enc},
            {"loss_bank_ms", 1e3 * median(loss)},
            {"optimizer_ms", 1e3 * median(optimizer_seconds)},
            {"overhead_share", ms > 0 ? std::max(0.0, 1.0 - enc / ms) : 0.0},
            {"threads", at::get_num_threads()}};
  }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// The grid of one total batch: full batch, then per micro-batch GradAccum,
// GradCache and both ContAccum variants at every memory multiple.
std::vector<Config> grid(int64_t total, const std::vector<int64_t>& micros, const std::vector<int64_t>& memories,
                         const std::vector<std::string>& strategies) {
  auto wanted = [&](const std::string& s) {
    return std::find(strategies.begin(), strategies.end(), s) != strategies.end();
  };
  std::vector<Config> out;
  if (wanted("full_batch")) out.push_back({"full_batch", total, total, 0});
  for (int64_t micro : micros) {
    if (micro >= total || total % micro != 0) continue;
    if (wanted("grad_accum")) out.push_back({"grad_accum", total, micro, 0});
    if (wanted("grad_cache")) out.push_back({"grad_cache", total, micro, 0});
    for (int64_t mult : memories) {
      if (wanted("contaccum")) out.push_back({"contaccum", total, micro, mult * total});
      if (wanted("contaccum_grad_cache")) out.push_back({"contaccum_grad_cache", total, micro, mult * total});
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"contaccum strategy benchmarks"};
  app.require_subcommand(1);
  std::string data, out_dir, batches_dir,
      totals_arg = "64,128,256,512", micros_arg = "8,32", memories_arg = "0,1,8",
      strategies_arg = "full_batch,grad_accum,grad_cache,contaccum,contaccum_grad_cache", strategy;
  int64_t rounds = 6, vocab_size = 8000, hard_negatives = 1, warmup = 1, steps = 5, threads = 0, total = 0, micro = 0,
          memory = 0;
  EncoderSpec spec;
  int64_t query_length = 32, passage_length = 128;

  auto* prep = app.add_subcommand("prepare", "tokenize training batches once");
  prep->add_option("--data", data, "BEIR data set (falls back to a synthetic one)")->required();
  prep->add_option("--out", out_dir, "output directory")->required();
  prep->add_option("--total-batch", totals_arg, "comma-separated total batches");
  prep->add_option("--rounds", rounds, "batches per total batch")->check(CLI::PositiveNumber);
  prep->add_option("--vocab-size", vocab_size)->check(CLI::PositiveNumber);
  prep->add_option("--hard-negatives", hard_negatives)->check(CLI::NonNegativeNumber);
  prep->add_option("--query-length", query_length)->check(CLI::PositiveNumber);
  prep->add_option("--passage-length", passage_length)->check(CLI::PositiveNumber);

  auto add_model = [&](CLI::App* cmd) {
    cmd->add_option("--batches", batches_dir, "what `prepare` wrote")->required();
    cmd->add_option("--encoder", spec.kind, "boe or transformer")->check(CLI::IsMember({"boe", "transformer"}));
    cmd->add_option("--dim", spec.dim)->check(CLI::PositiveNumber);
    cmd->add_option("--embedding-dim", spec.embedding_dim)->check(CLI::PositiveNumber);
    cmd->add_option("--hidden", spec.hidden)->check(CLI::PositiveNumber);
    cmd->add_option("--layers", spec.layers)->check(CLI::PositiveNumber);
    cmd->add_option("--heads", spec.heads)->check(CLI::PositiveNumber);
    cmd->add_option("--intermediate", spec.intermediate)->check(CLI::PositiveNumber);
    cmd->add_option("--query-length", spec.query_length)->check(CLI::PositiveNumber);
    cmd->add_option("--passage-length", spec.passage_length)->check(CLI::PositiveNumber);
    cmd->add_option("--warmup", warmup)->check(CLI::NonNegativeNumber);
    cmd->add_option("--steps", steps)->check(CLI::PositiveNumber);
    cmd->add_option("--threads", threads, "intra-op threads (0: LibTorch's default)")->check(CLI::NonNegativeNumber);
    cmd->add_option("--device", spec.device, "cpu, cuda or cuda:N (resolve_device)");
    cmd->add_option("--precision", spec.precision, "fp32, bf16 or fp16")
        ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  };
  auto* time = app.add_subcommand("time", "interleaved step times of a grid");
  add_model(time);
  time->add_option("--total-batch", totals_arg);
  time->add_option("--micro-batch", micros_arg);
  time->add_option("--memory", memories_arg, "memory sizes as multiples of the total batch");
  time->add_option("--strategies", strategies_arg);
  auto* rss = app.add_subcommand("rss", "peak memory of one configuration");
  add_model(rss);
  rss->add_option("--strategy", strategy)->required();
  rss->add_option("--total-batch", total)->required()->check(CLI::PositiveNumber);
  rss->add_option("--micro-batch", micro)->required()->check(CLI::PositiveNumber);
  rss->add_option("--memory", memory, "memory size in examples")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    if (*prep) {
      return prepare(data, out_dir, bench::parse_list(totals_arg, "--total-batch"), rounds, vocab_size, query_length,
                     passage_length, hard_negatives);
    }
    if (threads > 0) contaccum::set_compute_threads(static_cast<int>(threads));
    const auto batches = open_batches(batches_dir);
    const int64_t vocab = batches.manifest["vocab_size"];
    if (*time) {
      for (int64_t t : bench::parse_list(totals_arg, "--total-batch")) {
        const auto data_batches = batches.load(t, spec.query_length, spec.passage_length, warmup + steps);
        std::vector<std::unique_ptr<Runner>> runners;
        for (const auto& c : grid(t, bench::parse_list(micros_arg, "--micro-batch"),
                                  bench::parse_list(memories_arg, "--memory"), split(strategies_arg))) {
          runners.push_back(std::make_unique<Runner>(c, spec, vocab));
        }
        for (int64_t r = 0; r < warmup + steps; ++r) {
          // Each round starts one configuration later, so that no configuration
          // always runs right after the same neighbour (e.g. the full batch,
          // whose freed memory the next one faults in again).
          for (size_t i = 0; i < runners.size(); ++i) {
            runners[(i + static_cast<size_t>(r)) % runners.size()]->run(data_batches[static_cast<size_t>(r)],
                                                                        r >= warmup);
          }
        }
        for (const auto& runner : runners) std::cout << runner->result(spec).dump() << std::endl;
      }
      return 0;
    }
    // rss: one configuration alone in this process.
    const auto data_batches = batches.load(total, spec.query_length, spec.passage_length, warmup + steps);
    const double baseline = current_rss_mb();
    Runner runner(Config{strategy, total, micro, memory}, spec, vocab);
    for (int64_t r = 0; r < warmup + steps; ++r) runner.run(data_batches[static_cast<size_t>(r)], r >= warmup);
    auto j = runner.result(spec);
    j["peak_rss_mb"] = peak_rss_mb();
    j["baseline_rss_mb"] = baseline;
    if (runner.device.is_cuda()) j["peak_gpu_mb"] = peak_gpu_mb(runner.device);
    std::cout << j.dump() << std::endl;
    return 0;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
