#pragma once

// What the bank bench's files share: timing helpers, a micro-batch's bank
// products alone and their floor (BankProducts), the bank-work line
// (bank_work.cpp) and the whole steps (steps.cpp); main.cpp runs them.

#include <contaccum/contaccum.h>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "../bench_util.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace contaccum::bench {

using json = nlohmann::json;

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

// The CPU's model name and whether it has AVX-512 (sgemm's rate depends on
// both), and the number of online cores.
std::string machine();
// GFLOP/s of out = a b^T for a [r, d] and b [c, d] with LibTorch's product.
double sgemm_rate(int64_t r, int64_t c, int64_t d, int64_t rounds);

double helper_share(int64_t helper, int64_t pieces);
json helper_since(const HelperThreadStats& before);
ShortProductStats products_since(const ShortProductStats& before);
double gflops(const ShortProductStats& made);

struct BankWorkSetup {
  int64_t n = 32, d = 1024, m = 1024, rounds = 40;
  double temperature = 0.05;
};

// One micro-batch's loss alone, no banks: forward and backward, with cosine
// similarity and with the inner product (bank_work.cpp).
json loss_call_us(int64_t n, int64_t d);
// What the banks add to one micro-batch, and the products' rates alone
// (bank_work.cpp).
json bank_work(const BankWorkSetup& s);

struct StepSetup {
  int64_t total = 128, micro = 32, d = 1024, vocab = 16000, query_length = 16, passage_length = 128, rounds = 40;
  std::vector<int64_t> memories;
};

// Microseconds one ATen view call takes, outside and inside inference mode
// (steps.cpp).
json aten_view_us();
// Whole steps of every configuration, interleaved (steps.cpp);
// `floor_ms_per_gflop[m]`: milliseconds per GFLOP of the bank's products at m.
std::vector<json> steps(const StepSetup& s, const std::map<int64_t, double>& floor_ms_per_gflop);

}  // namespace contaccum::bench
