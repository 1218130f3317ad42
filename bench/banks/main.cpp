// The banks' arithmetic against the machine's matrix unit, measured in one run.
//
//   contaccum_bench_banks [--micro-batch 32] [--total-batch 128] [--dim 1024] [--memory 1024,4096,8192]
//                         [--rounds 40] [--passage-length 128] [--vocab 16000]
//
// Four kinds of JSON lines on stdout (bench/banks/run.sh collects them):
//   "loss_call": one micro-batch's loss alone, forward and backward, with
//     cosine similarity and with the inner product;
//   "sgemm": LibTorch's float32 matrix product at the bank's shapes (a
//     micro-batch's rows against the whole bank, and back) and at a large
//     square, the rate the bank work is held against;
//   "bank_work": for each bank size m, what ContAccum adds to one
//     micro-batch: the loss forward and backward with the banks minus
//     without them, plus `BankScoreCache::update` for the enqueued rows; its
//     floating-point operations counted from the shapes, hence GFLOP/s;
//     and the loss's element-wise kernels on that micro-batch's bank tiles
//     (softmax_tile.h; the fastest of 1,000 calls each);
//   "steps": whole optimizer steps of the main job's tower (a shared
//     bag-of-embeddings, attention pooling) with GradAccum and with ContAccum
//     at each m, interleaved round by round so that machine noise hits them
//     alike; ContAccum twice at each m, the loss making its products with
//     the short products (short_products.h) and with LibTorch's sgemm; the
//     excess of ContAccum over GradAccum against the arithmetic floor (the
//     bank's products at the faster of the measured sgemm and short rates);
//     and GradAccum whose tower only reads the banks' bytes once per
//     micro-batch (BankBytesTower): what bringing the banks in costs; and,
//     from a few more rounds with the loss's backward pass timed apart
//     (loss_backward_timer.h), each step's excess split by part.
#include <contaccum/contaccum.h>
#include <contaccum/loss/softmax_tile.h>

#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "../bench_util.h"
#include "loss_backward_timer.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CONTACCUM_BENCH_AVX2 1
#endif

using namespace contaccum;
using json = nlohmann::json;

namespace {

using bench::median;

// Median seconds of `f` over `rounds` calls after two warm-up calls.
template <typename F>
double time_median(int64_t rounds, F&& f) {
  f();
  f();
  std::vector<double> t;
  for (int64_t r = 0; r < rounds; ++r) {
    const Stopwatch watch;
    f();
    t.push_back(watch.seconds());
  }
  return median(t);
}

torch::Tensor unit(torch::Tensor x) { return x / x.norm(2, {-1}, /*keepdim=*/true); }

// ---------------------------------------------------------------- sgemm

// The CPU's model name and whether it has AVX-512 (sgemm's rate depends on
// both), from /proc/cpuinfo, and the number of online cores.
std::string machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  bool avx512 = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      model = line.substr(line.find(':') + 2);
    if (line.rfind("flags", 0) == 0) avx512 = avx512 || line.find(" avx512f") != std::string::npos;
  }
  return model + (avx512 ? ", AVX-512" : ", no AVX-512") + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " cores";
}

// GFLOP/s of out = a b^T for a [r, d] and b [c, d] with LibTorch's product.
double sgemm_rate(int64_t r, int64_t c, int64_t d, int64_t rounds) {
  const auto a = torch::randn({r, d}), b = torch::randn({c, d});
  auto out = torch::empty({r, c});
  const double s = time_median(rounds, [&] { at::mm_out(out, a, b.t()); });
  return 2.0 * static_cast<double>(r * c * d) / s / 1e9;
}

// A micro-batch's products against a bank of m rows, with their operands
// made once: timed alone at the start (the bank-work line) and again
// between the rounds of whole steps, where each round's floor is taken at
// that round's moment of the machine's drift.
class BankProducts {
 public:
  BankProducts(int64_t n, int64_t m, int64_t d)
      : n_(n),
        m_(m),
        d_(d),
        rows_(torch::randn({n, d})),
        bank_(torch::randn({m, d})),
        weights_(torch::randn({n, m})),
        scores_(torch::empty({n, m})),
        bank_scores_(torch::empty({m, n})),
        gradient_(torch::zeros({n, d})) {}

  // The rates of the three shapes, [n, d] x [d, m] and [m, d] x [d, n]
  // (scores) and [n, m] x [m, d] (gradients), with LibTorch's sgemm and
  // with the short products (short_products.h, what the loss uses, which
  // read the bank in place instead of packing it), each the median of
  // `rounds` calls; and the floor they give one micro-batch's bank work.
  json rates(int64_t rounds) {
    const double flop = 2.0 * static_cast<double>(n_ * m_ * d_);
    const auto rate = [&](auto&& product) { return flop / time_median(rounds, product) / 1e9; };
    const double scores = rate([&] { at::mm_out(scores_, rows_, bank_.t()); });
    const double bank = rate([&] { at::mm_out(bank_scores_, bank_, rows_.t()); });
    const double gradient = rate([&] { gradient_.addmm_(weights_, bank_); });
    const double short_scores = rate([&] { row_dots_out(scores_, rows_, bank_); });
    const double short_gradient = rate([&] { add_weighted_rows_(gradient_, weights_, bank_); });
    // Of the 8 n m d: 2 n m d in each score shape, 4 n m d in the gradient
    // shape. The floor takes each at the faster of the two ways to make it
    // (either orientation for the bank's rows against the micro-batch: the
    // same numbers, made either way round): what this machine has been
    // shown to reach for these shapes, whether or not the loss uses it.
    const double best_scores = std::max({scores, bank, short_scores});
    const double floor_s =
        flop * (1.0 / std::max(scores, short_scores) + 1.0 / best_scores + 2.0 / std::max(gradient, short_gradient)) /
        1e9;
    return {{"sgemm_gflops_rows_by_bank", scores},     {"sgemm_gflops_bank_by_rows", bank},
            {"sgemm_gflops_gradient", gradient},       {"short_gflops_scores", short_scores},
            {"short_gflops_gradient", short_gradient}, {"floor_ms", 1e3 * floor_s}};
  }

 private:
  int64_t n_, m_, d_;
  torch::Tensor rows_, bank_, weights_, scores_, bank_scores_, gradient_;
};

// Microseconds of the fastest of `calls` calls of `f` (the least disturbed
// by the machine's noise: for short kernels whose own time is the question).
template <typename F>
double fastest_us(int64_t calls, F&& f) {
  double best = std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < calls; ++c) {
    const Stopwatch watch;
    f();
    best = std::min(best, watch.seconds());
  }
  return 1e6 * best;
}

// The loss's element-wise kernels (softmax_tile.h) on one micro-batch's bank
// tiles: n rows against m bank columns (row-major) and m bank rows against
// n columns (kept column-major, as the loss keeps them).
json elementwise_us(int64_t n, int64_t m) {
  const auto rows = torch::randn({n, m}), columns = torch::randn({n, m}).t();
  auto rows_out = torch::empty({n, m}), columns_out = torch::empty({n, m}).t();
  const auto lse_rows = torch::randn({n}) + 10, lse_columns = torch::randn({m}) + 10;
  auto max_rows = torch::zeros({n}), sum_rows = torch::zeros({n});
  auto max_columns = torch::zeros({m}), sum_columns = torch::zeros({m});
  const int64_t calls = 1000;
  // Each call must take the kernels (they decline only tiles they do not
  // handle, or when the short products are switched off).
  const auto timed = [&](auto&& kernel) {
    TORCH_CHECK(kernel(), "elementwise_us: the tile kernels declined the bench's tile");
    return fastest_us(calls, kernel);
  };
  return {{"softmax_rows", timed([&] { return softmax_weights_tile(rows_out, rows, lse_rows, 0.5); })},
          {"softmax_columns", timed([&] { return softmax_weights_tile(columns_out, columns, lse_columns, 0.5); })},
          {"fold_rows", timed([&] { return fold_logsumexp_tile(rows, max_rows, sum_rows, true); })},
          {"fold_columns", timed([&] { return fold_logsumexp_tile(columns, max_columns, sum_columns, true); })}};
}

// One micro-batch's loss alone, no banks (what every strategy pays per
// micro-batch): forward and backward, the fastest of 2,000 calls, with
// cosine similarity (the rows normalised, core/unit_rows.h) and with the
// inner product; the difference is what normalising costs.
json loss_call_us(int64_t n, int64_t d) {
  const auto q = torch::randn({n, d}).requires_grad_(true);
  const auto p = torch::randn({n, 1, d}).requires_grad_(true);
  json out = {{"kind", "loss_call"}, {"micro_batch", n}, {"dim", d}};
  for (const auto& [name, similarity] : {std::pair{"cosine_us", Similarity::Cosine}, {"dot_us", Similarity::Dot}}) {
    const auto options = InfoNCEOptions().similarity(similarity).temperature(0.05);
    out[name] = fastest_us(2000, [&] {
      q.mutable_grad() = torch::Tensor();
      p.mutable_grad() = torch::Tensor();
      info_nce(q, p, options).loss.backward();
    });
  }
  return out;
}

// ---------------------------------------------------------------- bank work

struct BankWorkSetup {
  int64_t n = 32, d = 1024, m = 1024, rounds = 40;
  double temperature = 0.05;
};

// Banks of m unit rows and their score cache, as the strategy keeps them.
struct Banks {
  MemoryBank queries, passages;
  BankScoreCache cache;
  Banks(int64_t m, int64_t n, int64_t d, const InfoNCEOptions& loss)
      : queries(MemoryBankOptions(m)),
        passages(MemoryBankOptions(m)),
        cache(BankScoreCacheOptions(n).loss(loss).normalized_rows(true)) {
    for (int64_t filled = 0; filled < m; filled += n) enqueue(n, d);
  }
  void enqueue(int64_t n, int64_t d) {
    const int64_t first = passages.head();
    queries.enqueue(unit(torch::randn({n, d})));
    passages.enqueue(unit(torch::randn({n, 1, d})));
    cache.update(queries, passages, first, n);
  }
  InfoNCEBank view() const {
    InfoNCEBank b;
    b.passages = passages.view();
    b.queries = queries.view().select(1, 0);
    b.row_logsumexp = cache.row_logsumexp();
    b.row_target_dot = cache.row_target_dot();
    b.normalized = true;
    return b;
  }
};

// The share of the pieces shared out (helper_thread.h: the short products'
// and, in whole steps, the towers' and optimizer's kernels too) that the
// helper thread computed since `before` (about half when it gets the second
// core), and how often a caller had to move it off its own core.
// The helper's share of `pieces` shared out, of which it computed `helper`.
double helper_share(int64_t helper, int64_t pieces) {
  return pieces > 0 ? static_cast<double>(helper) / static_cast<double>(pieces) : 0.0;
}

json helper_since(const HelperThreadStats& before) {
  const auto now = helper_thread_stats();
  return {{"helper_share", helper_share(now.helper_pieces - before.helper_pieces, now.pieces - before.pieces)},
          {"helper_moves", now.moves - before.moves}};
}

// The short products made between `before` and now (short_product_stats),
// and their rate in GFLOP/s.
ShortProductStats products_since(const ShortProductStats& before) {
  const auto now = short_product_stats();
  return {now.calls - before.calls, now.seconds - before.seconds, now.flop - before.flop};
}

double gflops(const ShortProductStats& made) { return made.seconds > 0 ? made.flop / made.seconds / 1e9 : 0.0; }

// Median seconds of `loss`, each call after `before_each()` (untimed).
// `made`: the short products the calls of `loss` made (not `before_each`'s).
template <typename B, typename F>
double median_after(int64_t rounds, B&& before_each, F&& loss, ShortProductStats& made) {
  std::vector<double> seconds;
  made = {};
  for (int64_t r = 0; r < rounds; ++r) {
    before_each();
    const auto before = short_product_stats();
    const Stopwatch watch;
    loss();
    seconds.push_back(watch.seconds());
    const auto call = products_since(before);
    made.calls += call.calls, made.seconds += call.seconds, made.flop += call.flop;
  }
  return median(seconds);
}

// Empties the caches: 256 MiB written (more than this machine's last-level
// cache), as a training step's towers do between two micro-batches' losses
// (and its optimizer between steps), which also leaves the caches full of
// written lines and the translation caches empty. Its scalar loop also
// keeps the core off vector arithmetic meanwhile, as a pause does (below),
// which a step's towers do not.
class CacheEmptier {
 public:
  void operator()() {
    volatile float* written = evict_.data();  // every write happens
    for (size_t i = 0; i < evict_.size(); i += 16) written[i] = written[i] + 1.0f;
  }

 private:
  std::vector<float> evict_ = std::vector<float>(size_t{64} << 20);
};

// 30 ms on this thread reading the clock, touching no memory of its own. On
// the shared virtual machines measured, a loss after it ran about as slowly
// as after 256 MiB written (bench/performance/notes.md). Two variants in
// interrupted_losses tell apart the two things either could have changed:
// the data (the banks' lines gone from the caches) and the cores (their
// state after tens of ms without vector arithmetic).
void pause_on_clock() {
  const Stopwatch watch;
  while (watch.seconds() < 0.03) {
  }
}

volatile float g_read_sink = 0;

// Reads one float of every 64-byte line of each (contiguous float32)
// tensor, with scalar loads: brings its lines into the caches without
// running any vector arithmetic.
void read_every_line(const std::vector<torch::Tensor>& tensors) {
  float sum = 0;
  for (const auto& t : tensors) {
    const float* data = t.data_ptr<float>();
    for (int64_t i = 0; i < t.numel(); i += 16) sum += data[i];
  }
  g_read_sink = sum;
}

// The rates of the bank's products alone, with LibTorch's sgemm and with the
// short products, and the floor they give one micro-batch's bank work.
json product_rates(const BankWorkSetup& s) {
  json out = BankProducts(s.n, s.m, s.d).rates(s.rounds);
  out["short_isa"] = short_product_isa() == ShortProductIsa::Avx512 ? "AVX-512"
                     : short_product_isa() == ShortProductIsa::Avx2 ? "AVX2"
                                                                    : "portable";
  return out;
}

// The loss with the banks (`loss`) timed after each of four interruptions,
// as JSON fields: "cold" (the caches emptied), "paused" (30 ms reading the
// clock), and two that each undo one of the two things those change:
// "paused_then_read" (the pause, then every line of `data` read: the data
// warm again, no vector arithmetic) and "cold_then_vector" (the caches
// emptied, then both cores kept busy with vector arithmetic for 5 ms, as a
// step's towers keep them before its loss: short products of operands that
// are not the banks, 2 MiB read from the caches, shared with the helper
// thread as the loss's are).
template <typename F>
json interrupted_losses(const BankWorkSetup& s, F&& loss, const std::vector<torch::Tensor>& data) {
  CacheEmptier emptier;
  const auto other_x = torch::randn({s.n, s.d}), other_y = torch::randn({512, s.d});
  const auto other_out = torch::empty({s.n, 512});
  const std::vector<std::pair<std::string, std::function<void()>>> interruptions = {{"cold", [&] { emptier(); }},
                                                                                    {"paused", pause_on_clock},
                                                                                    {"paused_then_read",
                                                                                     [&] {
                                                                                       pause_on_clock();
                                                                                       read_every_line(data);
                                                                                     }},
                                                                                    {"cold_then_vector", [&] {
                                                                                       emptier();
                                                                                       const Stopwatch watch;
                                                                                       while (watch.seconds() < 0.005)
                                                                                         row_dots_out(other_out,
                                                                                                      other_x, other_y);
                                                                                     }}};
  json out;
  for (const auto& [name, interrupt] : interruptions) {
    ShortProductStats made;
    const double seconds = median_after(s.rounds, interrupt, loss, made);
    out["loss_with_bank_" + name + "_ms"] = 1e3 * seconds;
    out["short_gflops_in_loss_" + name] = gflops(made);
  }
  return out;
}

json bank_work(const BankWorkSetup& s) {
  const auto helper_before = helper_thread_stats();
  const auto loss = InfoNCEOptions().similarity(Similarity::Cosine).temperature(s.temperature);
  Banks banks(s.m, s.n, s.d, loss);
  const auto q = torch::randn({s.n, s.d}).requires_grad_(true);
  const auto p = torch::randn({s.n, 1, s.d}).requires_grad_(true);
  InfoNCEBankScores scores;  // the loss's, as the strategy hands them to the cache
  const auto step = [&](const InfoNCEBank& bank) {
    q.mutable_grad() = torch::Tensor();
    p.mutable_grad() = torch::Tensor();
    auto result = info_nce(q, p, loss, bank);
    result.loss.backward();
    scores = result.bank_scores;
  };
  InfoNCEBank none, with = banks.view();
  with.return_scores = true;
  const double without_s = time_median(s.rounds, [&] { step(none); });
  const auto products_before = short_product_stats();
  const double with_s = time_median(s.rounds, [&] { step(with); });
  const auto warm_products = products_since(products_before);
  const std::vector<torch::Tensor> data = {
      banks.queries.view(), banks.passages.view(), with.row_logsumexp, with.row_target_dot, q, p};
  const json interrupted = interrupted_losses(
      s, [&] { step(with); }, data);
  // The same with the loss's products made by LibTorch's sgemm.
  set_short_products_enabled(false);
  const double with_sgemm_s = time_median(s.rounds, [&] { step(with); });
  set_short_products_enabled(true);
  // As before the cache kept the banked rows' target dot products: the loss
  // computes them from both banks on every call.
  InfoNCEBank computing_targets = with;
  computing_targets.row_target_dot = torch::Tensor();
  const double computing_targets_s = time_median(s.rounds, [&] { step(computing_targets); });
  // The cache's update as the strategy makes it (from the loss's scores; the
  // bank is full, so they fit a write at the head) and, for comparison, as
  // it was made before (multiplying the new rows by the bank and the bank by
  // the new columns).
  const int64_t head = banks.passages.head();
  const double cache_s =
      time_median(s.rounds, [&] { banks.cache.update(banks.queries, banks.passages, head, s.n, scores); });
  const double multiplying_s =
      time_median(s.rounds, [&] { banks.cache.update(banks.queries, banks.passages, head, s.n); });
  const double nmd = static_cast<double>(s.n * s.m * s.d);
  // Loss: current rows x bank columns and bank rows x current columns, each
  // scored in the forward pass and multiplied once more for the gradient,
  // and scored again in the backward pass unless the loss keeps the scores
  // (they fit in one default tile of 1,024 x 4,096). The cache takes the
  // loss's kept scores and multiplies nothing.
  const bool kept = s.n * (s.n + s.m) + s.m * s.n <= 1024 * 4096;
  const double loss_flops = 2.0 * nmd * (kept ? 4.0 : 6.0), cache_flops = kept ? 0.0 : 2.0 * nmd * 2.0;
  const double required = 2.0 * nmd * 4.0;  // any exact method's products
  const double bank_s = std::max(1e-12, with_s - without_s) + cache_s;
  json out = {{"kind", "bank_work"},
              {"memory_size", s.m},
              {"micro_batch", s.n},
              {"dim", s.d},
              {"loss_without_bank_ms", 1e3 * without_s},
              {"loss_with_bank_ms", 1e3 * with_s},
              {"loss_with_bank_computing_targets_ms", 1e3 * computing_targets_s},
              {"loss_with_bank_sgemm_ms", 1e3 * with_sgemm_s},
              {"cache_update_ms", 1e3 * cache_s},
              {"cache_update_multiplying_ms", 1e3 * multiplying_s},
              {"bank_ms", 1e3 * bank_s},
              {"scores_kept", kept},
              {"gflop", (loss_flops + cache_flops) / 1e9},
              {"required_gflop", required / 1e9},
              {"gflops", (loss_flops + cache_flops) / bank_s / 1e9},
              {"short_gflops_in_loss", gflops(warm_products)},
              {"elementwise_fastest_us", elementwise_us(s.n, s.m)},
              {"short_products_helper", helper_since(helper_before)}};
  out.update(interrupted);
  out.update(product_rates(s));
  return out;
}

// ---------------------------------------------------------------- steps

struct StepSetup {
  int64_t total = 128, micro = 32, d = 1024, vocab = 16000, query_length = 16, passage_length = 128, rounds = 40;
  std::vector<int64_t> memories;
};

std::shared_ptr<EncoderModule> main_job_tower(const StepSetup& s) {
  auto settings = EncoderRegistry::global().defaults();
  settings.set("dim", s.d);
  settings.set("embedding_dim", s.d);
  settings.set("pooling", std::string("attention"));
  settings.set("dropout", 0.1);
  TowerContext context;
  context.vocab_size = s.vocab;
  context.max_positions = s.passage_length;
  return EncoderRegistry::global().at("bag_of_embeddings").make_tower(settings, context);
}

TrainingBatch random_batch(const StepSetup& s, int64_t seed) {
  torch::manual_seed(seed);
  TrainingBatch b;
  b.queries.input_ids = torch::randint(1, s.vocab, {s.total, s.query_length}, torch::kLong);
  b.queries.attention_mask = torch::ones({s.total, s.query_length}, torch::kLong);
  b.passages.input_ids = torch::randint(1, s.vocab, {s.total, s.passage_length}, torch::kLong);
  b.passages.attention_mask = torch::ones({s.total, s.passage_length}, torch::kLong);
  return b;
}

// The banks' bytes without their arithmetic: a tower that, after encoding a
// micro-batch's passages (where ContAccum's loss next reads its banks),
// reads two buffers the size of a query bank and a passage bank of m rows,
// one add per float, both threads sharing the sweep. Every exact method
// reads every bank row once per micro-batch; GradAccum with this tower,
// against GradAccum alone, is what that read costs in whole steps (the
// towers' data it evicts included) beyond the sweep's own time warm.
class BankBytesTower : public EncoderModule {
 public:
  BankBytesTower(std::shared_ptr<EncoderModule> inner, int64_t m, int64_t d, int64_t passage_length)
      : inner_(register_module("inner", std::move(inner))),
        bytes_(torch::randn({2 * m * d})),
        passage_length_(passage_length) {}
  torch::Tensor forward(const EncoderInput& input) override {
    auto out = inner_->forward(input);
    if (input.input_ids.size(1) == passage_length_) sweep();
    return out;
  }
  int64_t output_dim() const override { return inner_->output_dim(); }
  // Reads the buffers once; returns their sum (so the reads are not
  // optimised away).
  float sweep() {
    constexpr int64_t kGrain = int64_t{1} << 16;
    const int64_t n = bytes_.numel(), chunks = (n + kGrain - 1) / kGrain;
    std::vector<float> partial(static_cast<size_t>(chunks));
    const float* x = bytes_.data_ptr<float>();
    share_out_ranges(n, kGrain, [&](int64_t begin, int64_t end) {
      partial[static_cast<size_t>(begin / kGrain)] =
          cpu_features().avx2 ? sum_avx2(x + begin, end - begin) : sum_lanes(x + begin, end - begin);
    });
    float total = 0;
    for (float v : partial) total += v;
    sink_ += total;
    return total;
  }

 private:
  static float sum_lanes(const float* x, int64_t n) {
    float lane[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; ++j) lane[j] += x[i + j];
    float total = 0;
    for (; i < n; ++i) total += x[i];
    for (float v : lane) total += v;
    return total;
  }
#ifdef CONTACCUM_BENCH_AVX2
  __attribute__((target("avx2"))) static float sum_avx2(const float* x, int64_t n) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, e = a;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
      b = _mm256_add_ps(b, _mm256_loadu_ps(x + i + 8));
      c = _mm256_add_ps(c, _mm256_loadu_ps(x + i + 16));
      e = _mm256_add_ps(e, _mm256_loadu_ps(x + i + 24));
    }
    alignas(32) float lane[8];
    _mm256_store_ps(lane, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, e)));
    float total = sum_lanes(x + i, n - i);
    for (float v : lane) total += v;
    return total;
  }
#else
  static float sum_avx2(const float* x, int64_t n) { return sum_lanes(x, n); }
#endif
  std::shared_ptr<EncoderModule> inner_;
  torch::Tensor bytes_;
  int64_t passage_length_;
  float sink_ = 0;
};

// Microseconds one ATen view call takes (a slice of a small tensor, the
// fastest of 100 repetitions of 1,000 calls), outside and inside inference
// mode: the scale of the calls counted by count_operator_calls.
json aten_view_us() {
  const auto slices_us = [](const torch::Tensor& t) {
    return fastest_us(100,
                      [&] {
                        for (int64_t i = 0; i < 1000; ++i) (void)t.slice(0, i % 8, 16);
                      }) /
           1000.0;
  };
  const double plain = slices_us(torch::randn({32, 64}));
  c10::InferenceMode inference;
  return {{"slice", plain}, {"slice_in_inference_mode", slices_us(torch::randn({32, 64}))}};
}

struct Runner {
  std::string name;
  int64_t memory = 0;
  bool short_products = true;  // the loss's products: short_products.h, or LibTorch's
  DualEncoder model{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<Strategy> strategy;
  std::vector<double> seconds;
  // Where each step went: the towers' forward passes and every backward pass
  // (the loss's included), the losses' forward passes and the banks'
  // updates, the optimizer (StepResult's split).
  std::vector<double> encode, loss, optimizer_seconds;
  // Of the losses' time, the banks' update (enqueue and score cache,
  // StepStats::bank_seconds).
  std::vector<double> banks;
  // ATen operator calls in one step (count_operator_calls), counted after the timed
  // steps.
  int64_t aten_calls_per_step = 0;
  // The short products' time inside each step, and their operations
  // (short_product_stats: every product the kernels made, the banks' and
  // the in-batch ones).
  std::vector<double> product_seconds;
  ShortProductStats products;
  // The pieces shared out with the helper thread during the timed steps
  // (the towers' and the loss's), and those of them the helper computed.
  int64_t pieces = 0, helper_pieces = 0;
  std::shared_ptr<BankBytesTower> sweeping;  // the bank-bytes runner's tower
  // The split rounds' steps (split_step), milliseconds by part, each part's
  // list step by step: where a step's time goes, the loss's forward and
  // backward passes apart and the products inside each.
  std::map<std::string, std::vector<double>> parts;

  // With `bank_bytes`, GradAccum whose tower reads m rows' worth of both
  // banks' bytes once per micro-batch (BankBytesTower).
  Runner(const StepSetup& s, int64_t m, bool short_products_in_loss = true, bool bank_bytes = false)
      : name(bank_bytes ? "grad_accum_reading_bank_bytes"
             : m > 0    ? "contaccum"
                        : "grad_accum"),
        memory(m),
        short_products(short_products_in_loss) {
    torch::manual_seed(0);
    std::shared_ptr<EncoderModule> tower = main_job_tower(s);
    if (bank_bytes) {
      sweeping = std::make_shared<BankBytesTower>(tower, m, s.d, s.passage_length);
      tower = sweeping;
    }
    model = DualEncoder(tower, DualEncoderOptions().similarity(Similarity::Cosine));
    model->train();
    optimizer = make_adamw(*model, AdamWSetup().lr(1e-3));
    auto options = m > 0 && !bank_bytes ? StrategyOptions::contaccum(s.total, s.micro, m)
                                        : StrategyOptions::grad_accum(s.total, s.micro);
    options.loss(InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05));
    strategy = std::make_unique<Strategy>(model, options);
  }
  void step(const TrainingBatch& batch, bool record) {
    set_short_products_enabled(short_products);
    const auto products_before = short_product_stats();
    const auto helper_before = helper_thread_stats();
    const Stopwatch watch;
    zero_gradients(*optimizer);
    const auto result = strategy->compute_gradients(batch);
    const double before_optimizer = watch.seconds();
    optimizer->step();
    if (!record) return;
    seconds.push_back(watch.seconds());
    const auto made = products_since(products_before);
    product_seconds.push_back(made.seconds);
    products.calls += made.calls, products.seconds += made.seconds, products.flop += made.flop;
    const auto helper = helper_thread_stats();
    pieces += helper.pieces - helper_before.pieces;
    helper_pieces += helper.helper_pieces - helper_before.helper_pieces;
    encode.push_back(result.encode_seconds);
    loss.push_back(result.loss_seconds);
    banks.push_back(result.bank_seconds);
    optimizer_seconds.push_back(seconds.back() - before_optimizer);
  }
  // One step with the loss's backward pass timed (LossBackwardTimer), its
  // parts appended to `parts`: the towers' forward and backward passes
  // (encode less the loss's backward), the loss's forward pass (without the
  // banks' update) and its backward pass, each as products and the rest, the
  // banks' update and the optimizer.
  void split_step(const TrainingBatch& batch) {
    set_short_products_enabled(short_products);
    const auto products_before = short_product_stats();
    const Stopwatch watch;
    StepStats result;
    double loss_backward = 0.0, backward_products = 0.0;
    {
      const bench::LossBackwardTimer timer;
      zero_gradients(*optimizer);
      result = strategy->compute_gradients(batch);
      loss_backward = timer.seconds, backward_products = timer.product_seconds;
    }
    const double before_optimizer = watch.seconds();
    optimizer->step();
    const double products = products_since(products_before).seconds;
    const double loss_forward = result.loss_seconds - result.bank_seconds;
    const std::pair<const char*, double> split[] = {
        {"step", watch.seconds()},
        {"towers", result.encode_seconds - loss_backward},
        {"loss_forward_products", products - backward_products},
        {"loss_forward_other", loss_forward - (products - backward_products)},
        {"loss_backward_products", backward_products},
        {"loss_backward_other", loss_backward - backward_products},
        {"bank_update", result.bank_seconds},
        {"optimizer", watch.seconds() - before_optimizer}};
    for (const auto& [part, sec] : split) parts[part].push_back(1e3 * sec);
  }
};

// A 95% interval of the median of `x` (the per-round differences): the 2.5th
// and 97.5th percentiles of the medians of 2,000 resamplings with
// replacement (a fixed seed: the same numbers give the same interval with
// the same C++ library). How far the spread between the rounds of one run
// leaves the paired excess open; runs minutes apart drift further.
std::pair<double, double> median_interval(const std::vector<double>& x) {
  std::mt19937 generator(27);
  std::uniform_int_distribution<size_t> pick(0, x.size() - 1);
  std::vector<double> medians, sample(x.size());
  for (int b = 0; b < 2000; ++b) {
    for (double& v : sample) v = x[pick(generator)];
    medians.push_back(median(sample));
  }
  std::sort(medians.begin(), medians.end());
  return {medians[50], medians[1949]};
}

// Rounds of steps whose time is split by part (Runner::split_step).
constexpr int64_t kSplitRounds = 20;

// Each part's median over the split rounds, and the median of its per-round
// difference from `base`'s (the same round's GradAccum step).
json parts_over(const Runner& run, const Runner& base) {
  json medians, over;
  for (const auto& [part, ms] : run.parts) {
    const auto& base_ms = base.parts.at(part);
    std::vector<double> difference;
    for (size_t i = 0; i < ms.size(); ++i) difference.push_back(ms[i] - base_ms[i]);
    medians[part] = median(ms);
    over[part] = median(difference);
  }
  return {{"parts_ms", medians}, {"parts_over_grad_accum_ms", over}};
}

// `floor_ms_per_gflop[m]`: milliseconds per GFLOP of the bank's products at m.
std::vector<json> steps(const StepSetup& s, const std::map<int64_t, double>& floor_ms_per_gflop) {
  std::vector<std::unique_ptr<Runner>> runners;
  runners.push_back(std::make_unique<Runner>(s, 0));
  for (int64_t m : s.memories) {
    runners.push_back(std::make_unique<Runner>(s, m));
    runners.push_back(std::make_unique<Runner>(s, m, false));
    runners.push_back(std::make_unique<Runner>(s, m, true, /*bank_bytes=*/true));
  }
  // Enough steps first to fill the largest bank.
  const int64_t fill = *std::max_element(s.memories.begin(), s.memories.end()) / s.total + 2;
  const int64_t k = static_cast<int64_t>(runners.size());
  // After each timed round, the bank products alone once more (the median
  // of a few calls each): each round's floor, a step's worth of micro-batches.
  constexpr int64_t kFloorCalls = 3;
  std::map<int64_t, BankProducts> alone;
  std::map<int64_t, std::vector<double>> round_floor_s;
  for (int64_t m : s.memories) alone.try_emplace(m, s.micro, m, s.d);
  const double micro_batches = static_cast<double>(s.total) / static_cast<double>(s.micro);
  const auto helper_before = helper_thread_stats();
  for (int64_t r = 0; r < fill + s.rounds; ++r) {
    const auto batch = random_batch(s, r);
    for (int64_t i = 0; i < k; ++i) runners[static_cast<size_t>((r + i) % k)]->step(batch, r >= fill);
    if (r < fill) continue;
    for (auto& [m, products] : alone)
      round_floor_s[m].push_back(products.rates(kFloorCalls)["floor_ms"].get<double>() / 1e3 * micro_batches);
  }
  const double base = median(runners[0]->seconds);
  // The helper's share over every configuration's timed steps (not the
  // floors' products between the rounds); its moves over the whole loop.
  auto helper = helper_since(helper_before);
  int64_t pieces = 0, helper_pieces = 0;
  for (const auto& run : runners) pieces += run->pieces, helper_pieces += run->helper_pieces;
  helper["helper_share"] = helper_share(helper_pieces, pieces);
  const auto count_batch = random_batch(s, fill + s.rounds);
  for (const auto& run : runners)
    run->aten_calls_per_step = count_operator_calls([&] { run->step(count_batch, false); });
  // Split rounds after the timed ones (the observer they install costs every
  // operator call a little), interleaved alike: where each step's time goes.
  const int64_t split_rounds = std::min<int64_t>(s.rounds, kSplitRounds);
  for (int64_t r = 0; r < split_rounds; ++r) {
    const auto batch = random_batch(s, fill + s.rounds + 1 + r);
    for (int64_t i = 0; i < k; ++i) runners[static_cast<size_t>((r + i) % k)]->split_step(batch);
  }
  set_short_products_enabled(true);
  std::vector<json> out;
  for (const auto& run : runners) {
    const double ms = 1e3 * median(run->seconds);
    // Each round steps every configuration once, one after another, so the
    // difference within a round is taken at one moment of this machine's
    // drift: the median of those differences is the steadier excess.
    std::vector<double> over;
    for (size_t i = 0; i < run->seconds.size(); ++i) over.push_back(run->seconds[i] - runners[0]->seconds[i]);
    const double paired_ms = 1e3 * median(over);
    const auto [low, high] = median_interval(over);
    // 8 n m d floating-point operations per micro-batch of n: the loss's
    // two score products and two gradient products (the cache reuses the
    // scores).
    const double flop = 8.0 * static_cast<double>(s.total * run->memory * s.d);
    const bool banked = run->memory > 0 && !run->sweeping;
    const double floor_ms = banked ? floor_ms_per_gflop.at(run->memory) * flop / 1e9 : 0.0;
    // The same with each round's own floor, taken minutes nearer its steps
    // than the bank-work line's (the products' rate alone drifts with the
    // machine as the steps do).
    const std::vector<double> no_floor(over.size(), 0.0);
    const auto& round_floor = banked ? round_floor_s.at(run->memory) : no_floor;
    std::vector<double> beyond_round_floor;
    for (size_t i = 0; i < over.size(); ++i) beyond_round_floor.push_back(over[i] - round_floor[i]);
    const auto [round_low, round_high] = median_interval(beyond_round_floor);
    out.push_back({{"kind", "steps"},
                   {"strategy", run->name},
                   {"memory_size", run->memory},
                   {"products", run->short_products ? "short" : "sgemm"},
                   {"total_batch", s.total},
                   {"micro_batch", s.micro},
                   {"dim", s.d},
                   {"passage_length", s.passage_length},
                   {"ms_per_step", ms},
                   {"excess_over_grad_accum_ms", ms - 1e3 * base},
                   {"arithmetic_floor_ms", floor_ms},
                   {"excess_beyond_floor_share", (ms - 1e3 * base - floor_ms) / (1e3 * base)},
                   {"paired_excess_over_grad_accum_ms", paired_ms},
                   {"paired_excess_beyond_floor_share", (paired_ms - floor_ms) / (1e3 * base)},
                   {"paired_excess_interval_ms", {1e3 * low, 1e3 * high}},
                   {"round_floor_ms", 1e3 * median(round_floor)},
                   {"paired_excess_beyond_round_floor_share", median(beyond_round_floor) / base},
                   {"paired_excess_beyond_round_floor_interval_ms", {1e3 * round_low, 1e3 * round_high}},
                   {"ms_encode", 1e3 * median(run->encode)},
                   {"ms_loss", 1e3 * median(run->loss)},
                   {"ms_banks", 1e3 * median(run->banks)},
                   {"aten_calls_per_step", run->aten_calls_per_step},
                   {"ms_optimizer", 1e3 * median(run->optimizer_seconds)},
                   {"ms_short_products", 1e3 * median(run->product_seconds)},
                   {"short_products_gflops", gflops(run->products)},
                   {"helper_share_in_steps", helper_share(run->helper_pieces, run->pieces)},
                   {"timed_steps", run->seconds.size()},
                   {"split_steps", run->parts.at("step").size()},
                   {"short_products_helper", helper}});
    out.back().update(parts_over(*run, *runners[0]));
    if (run->sweeping) {
      // The sweep's own time with the buffers in the cache, as often as a
      // step makes it: what is left of the excess is the memory hierarchy's.
      const double warm = time_median(s.rounds, [&] { run->sweeping->sweep(); });
      out.back()["products"] = "none";
      out.back()["bank_bytes_read_warm_ms"] = 1e3 * warm * static_cast<double>(s.total / s.micro);
    }
  }
  return out;
}

std::vector<int64_t> parse_bank_sizes(const std::string& text) {
  const auto out = bench::parse_list(text, "--memory");
  for (const int64_t v : out)
    TORCH_CHECK(v > 0, "--memory must be a comma-separated list of positive integers, got '", text, "'");
  TORCH_CHECK(!out.empty(), "--memory must name at least one bank size");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The banks' arithmetic against sgemm, and ContAccum's steps against GradAccum's"};
  StepSetup steps_setup;
  std::string memories = "1024,4096,8192";
  app.add_option("--micro-batch", steps_setup.micro, "rows per micro-batch")->check(CLI::PositiveNumber);
  app.add_option("--total-batch", steps_setup.total, "examples per optimizer step")->check(CLI::PositiveNumber);
  app.add_option("--dim", steps_setup.d, "representation width")->check(CLI::PositiveNumber);
  app.add_option("--memory", memories, "bank sizes, comma-separated");
  app.add_option("--rounds", steps_setup.rounds, "timed repetitions")->check(CLI::PositiveNumber);
  app.add_option("--passage-length", steps_setup.passage_length, "tokens per passage")->check(CLI::PositiveNumber);
  app.add_option("--vocab", steps_setup.vocab, "embedding table rows")->check(CLI::PositiveNumber);
  bool skip_steps = false;
  app.add_flag("--no-steps", skip_steps, "only the sgemm and bank-work lines");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_allocator();
    steps_setup.memories = parse_bank_sizes(memories);
    torch::manual_seed(1);
    const int64_t n = steps_setup.micro, d = steps_setup.d, rounds = steps_setup.rounds;
    const double square = sgemm_rate(2048, 2048, d, std::max<int64_t>(5, rounds / 4));
    std::cout << json{{"kind", "sgemm"},
                      {"shape", {2048, 2048, d}},
                      {"gflops", square},
                      {"threads", at::get_num_threads()},
                      {"machine", machine()}}
                     .dump()
              << std::endl;
    auto call = loss_call_us(n, d);
    call["aten_view_us"] = aten_view_us();
    std::cout << call.dump() << std::endl;
    std::map<int64_t, double> floor_ms_per_gflop;
    for (int64_t m : steps_setup.memories) {
      BankWorkSetup s;
      s.n = n, s.d = d, s.m = m, s.rounds = rounds;
      const auto line = bank_work(s);
      std::cout << line.dump() << std::endl;
      floor_ms_per_gflop[m] = line["floor_ms"].get<double>() / line["required_gflop"].get<double>();
    }
    if (skip_steps) return 0;
    for (const auto& line : steps(steps_setup, floor_ms_per_gflop)) std::cout << line.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "contaccum_bench_banks: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
