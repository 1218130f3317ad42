// The bank bench's whole steps: GradAccum and ContAccum (short products and
// sgemm) at each bank size, and GradAccum reading the banks' bytes or making
// their products (control_towers.h), interleaved round by round; each round's floor after it; then split rounds
// with the loss's backward pass timed apart (loss_backward_timer.h).
#include "bank_bench.h"

#include "control_towers.h"
#include "loss_backward_timer.h"

#include <functional>
#include <memory>
#include <random>
#include <utility>

namespace contaccum::bench {
namespace {

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

// What a GradAccum runner's tower adds of the banks' cost (control_towers.h).
enum class Added { Nothing, BankBytes, BankProducts };

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
  Added added = Added::Nothing;
  std::shared_ptr<BankBytesTower> sweeping;        // the bank-bytes runner's tower
  std::shared_ptr<BankProductsTower> multiplying;  // the bank-products runner's
  // The split rounds' steps (split_step), milliseconds by part, each part's
  // list step by step: where a step's time goes, the loss's forward and
  // backward passes apart and the products inside each.
  std::map<std::string, std::vector<double>> parts;

  // With `added`, GradAccum whose tower does, after each micro-batch's
  // passages, one part of the banks' cost at m (control_towers.h).
  Runner(const StepSetup& s, int64_t m, bool short_products_in_loss = true, Added added = Added::Nothing)
      : name(added == Added::BankBytes      ? "grad_accum_reading_bank_bytes"
             : added == Added::BankProducts ? "grad_accum_making_bank_products"
             : m > 0                        ? "contaccum"
                                            : "grad_accum"),
        memory(m),
        short_products(short_products_in_loss),
        added(added) {
    torch::manual_seed(0);
    std::shared_ptr<EncoderModule> tower = main_job_tower(s);
    if (added == Added::BankBytes) {
      sweeping = std::make_shared<BankBytesTower>(tower, m, s.d, s.passage_length);
      tower = sweeping;
    } else if (added == Added::BankProducts) {
      multiplying = std::make_shared<BankProductsTower>(tower, s.micro, m, s.d, s.passage_length);
      tower = multiplying;
    }
    model = DualEncoder(tower, DualEncoderOptions().similarity(Similarity::Cosine));
    model->train();
    optimizer = make_adamw(*model, AdamWSetup().lr(1e-3));
    auto options = m > 0 && added == Added::Nothing ? StrategyOptions::contaccum(s.total, s.micro, m)
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
  // banks' update and the optimizer; for the bank-products control, its
  // tower's products apart from the towers' time and the loss's.
  void split_step(const TrainingBatch& batch) {
    set_short_products_enabled(short_products);
    const auto products_before = short_product_stats();
    const double tower_products_before = multiplying ? multiplying->seconds() : 0.0;
    const Stopwatch watch;
    StepStats result;
    double loss_backward = 0.0, backward_products = 0.0;
    {
      const bench::LossBackwardTimer timer;
      zero_gradients(*optimizer);
      result = strategy->compute_gradients(batch);
      TORCH_CHECK(timer.calls > 0,
                  "contaccum_bench_banks: the loss's backward pass went unseen (no autograd node named "
                  "*TiledInfoNCE* ran), so the step cannot be split by part");
      loss_backward = timer.seconds, backward_products = timer.product_seconds;
    }
    const double before_optimizer = watch.seconds();
    optimizer->step();
    const double total = watch.seconds();
    const double tower_products = multiplying ? multiplying->seconds() - tower_products_before : 0.0;
    const double products = products_since(products_before).seconds - tower_products;
    const double loss_forward = result.loss_seconds - result.bank_seconds;
    const std::pair<const char*, double> split[] = {
        {"step", total},
        {"towers", result.encode_seconds - loss_backward - tower_products},
        {"bank_products_in_tower", tower_products},
        {"loss_forward_products", products - backward_products},
        {"loss_forward_other", loss_forward - (products - backward_products)},
        {"loss_backward_products", backward_products},
        {"loss_backward_other", loss_backward - backward_products},
        {"bank_update", result.bank_seconds},
        {"optimizer", total - before_optimizer}};
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

// Per round, a banked runner's excess over GradAccum less the round's floor
// and less what the bank-bytes control's read cost in the same round (its
// excess over GradAccum less the read's own time warm, `read_warm_s` a
// step): the part of ContAccum's excess that neither the arithmetic nor
// bringing the banks through the caches accounts for. Its median as a share
// of GradAccum's median step, and the median's 95% interval in ms.
json beyond_bank_bytes(const Runner& run, const Runner& control, const Runner& base,
                       const std::vector<double>& round_floor_s, double read_warm_s) {
  std::vector<double> beyond;
  for (size_t i = 0; i < run.seconds.size(); ++i) {
    const double bank_bytes = control.seconds[i] - base.seconds[i] - read_warm_s;
    beyond.push_back(run.seconds[i] - base.seconds[i] - round_floor_s[i] - bank_bytes);
  }
  const auto [low, high] = median_interval(beyond);
  return {{"paired_excess_beyond_round_floor_and_bank_bytes_share", median(beyond) / median(base.seconds)},
          {"paired_excess_beyond_round_floor_and_bank_bytes_interval_ms", {1e3 * low, 1e3 * high}}};
}

// Per round, a banked runner's excess over the bank-products control
// (GradAccum making the same products in the same places, nothing else of
// the banks): ContAccum's own work with its banks beyond the products any
// exact method makes. Its median as a share of GradAccum's median step, and
// the median's 95% interval in ms.
json beyond_bank_products(const Runner& run, const Runner& control, const Runner& base) {
  std::vector<double> beyond;
  for (size_t i = 0; i < run.seconds.size(); ++i) beyond.push_back(run.seconds[i] - control.seconds[i]);
  const auto [low, high] = median_interval(beyond);
  return {{"paired_excess_beyond_bank_products_share", median(beyond) / median(base.seconds)},
          {"paired_excess_beyond_bank_products_interval_ms", {1e3 * low, 1e3 * high}}};
}

}  // namespace

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

// `floor_ms_per_gflop[m]`: milliseconds per GFLOP of the bank's products at m.
std::vector<json> steps(const StepSetup& s, const std::map<int64_t, double>& floor_ms_per_gflop) {
  std::vector<std::unique_ptr<Runner>> runners;
  runners.push_back(std::make_unique<Runner>(s, 0));
  for (int64_t m : s.memories) {
    runners.push_back(std::make_unique<Runner>(s, m));
    runners.push_back(std::make_unique<Runner>(s, m, false));
    runners.push_back(std::make_unique<Runner>(s, m, true, Added::BankBytes));
    runners.push_back(std::make_unique<Runner>(s, m, true, Added::BankProducts));
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
  // The bank-bytes sweeps' own time warm, as often as a step makes them.
  std::map<int64_t, const Runner*> control, products_control;
  std::map<int64_t, double> read_warm_s;
  for (const auto& run : runners) {
    if (run->added == Added::BankProducts) products_control[run->memory] = run.get();
    if (!run->sweeping) continue;
    control[run->memory] = run.get();
    read_warm_s[run->memory] =
        time_median(s.rounds, [&] { run->sweeping->sweep(); }) * static_cast<double>(s.total / s.micro);
  }
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
    if (banked && run->added == Added::Nothing && control.count(run->memory))
      out.back().update(
          beyond_bank_bytes(*run, *control.at(run->memory), *runners[0], round_floor, read_warm_s.at(run->memory)));
    if (banked && run->added == Added::Nothing && run->short_products && products_control.count(run->memory))
      out.back().update(beyond_bank_products(*run, *products_control.at(run->memory), *runners[0]));
    if (run->added == Added::BankProducts) out.back()["control"] = "bank_products";
    if (run->sweeping) {
      // What is left of the excess beyond the sweep's own time warm is the
      // memory hierarchy's.
      out.back()["products"] = "none";
      out.back()["bank_bytes_read_warm_ms"] = 1e3 * read_warm_s.at(run->memory);
    }
  }
  return out;
}

}  // namespace contaccum::bench
