// The bank bench's bank-work line: what the banks add to one micro-batch
// (the loss with and without them, the score cache's update), the loss's
// element-wise kernels on the bank tiles, the loss after interruptions
// (cold, paused, read, vector), and the products' rates alone with their
// floor; also the machine's name and sgemm's rate.
#include "bank_bench.h"

#include <contaccum/loss/softmax_tile.h>

#include <fstream>
#include <functional>
#include <thread>
#include <utility>

namespace contaccum::bench {
namespace {

torch::Tensor unit(torch::Tensor x) { return x / x.norm(2, {-1}, /*keepdim=*/true); }

}  // namespace

// ---------------------------------------------------------------- sgemm

// The CPU's model name, family and model numbers (a virtual machine's model
// name, "AMD EPYC", says nothing of the generation: family 25 is Zen 3 or 4,
// 26 Zen 5) and whether it has AVX-512 (sgemm's rate depends on all of
// them), from /proc/cpuinfo, and the number of online cores.
std::string machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU", family, number;
  bool avx512 = false;
  auto value = [&line] { return line.substr(line.find(':') + 2); };
  while (std::getline(cpuinfo, line)) {
    if (line.find(':') == std::string::npos || line.find(':') + 2 > line.size()) continue;
    if (line.rfind("model name", 0) == 0) model = value();
    if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value();
    if (line.rfind("model\t", 0) == 0 && number.empty()) number = value();
    if (line.rfind("flags", 0) == 0) avx512 = avx512 || line.find(" avx512f") != std::string::npos;
  }
  if (!family.empty()) model += " (family " + family + (number.empty() ? "" : ", model " + number) + ")";
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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

// The helper's share of `pieces` shared out, of which it computed `helper`.
double helper_share(int64_t helper, int64_t pieces) {
  return pieces > 0 ? static_cast<double>(helper) / static_cast<double>(pieces) : 0.0;
}

// The share of the pieces shared out (helper_thread.h: the short products'
// and, in whole steps, the towers' and optimizer's kernels too) that the
// helper thread computed since `before` (about half when it gets the second
// core), and how often a caller had to move it off its own core.
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

namespace {

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

}  // namespace

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

}  // namespace contaccum::bench
