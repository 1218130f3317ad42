#include "control_towers.h"

#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CONTACCUM_BENCH_AVX2 1
#endif

namespace contaccum::bench {
namespace {

float sum_lanes(const float* x, int64_t n) {
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
__attribute__((target("avx2"))) float sum_avx2(const float* x, int64_t n) {
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
float sum_avx2(const float* x, int64_t n) { return sum_lanes(x, n); }
#endif

// The loss's scale of its scores: 1 / temperature, with the bench's 0.05.
constexpr double kInverseTemperature = 20.0;

}  // namespace

AfterPassagesTower::AfterPassagesTower(std::shared_ptr<EncoderModule> inner, int64_t passage_length)
    : inner_(register_module("inner", std::move(inner))), passage_length_(passage_length) {}

torch::Tensor AfterPassagesTower::forward(const EncoderInput& input) {
  auto out = inner_->forward(input);
  if (input.input_ids.size(1) == passage_length_) after_passages();
  return out;
}

int64_t AfterPassagesTower::output_dim() const { return inner_->output_dim(); }

BankBytesTower::BankBytesTower(std::shared_ptr<EncoderModule> inner, int64_t m, int64_t d, int64_t passage_length)
    : AfterPassagesTower(std::move(inner), passage_length), bytes_(torch::randn({2 * m * d})) {}

float BankBytesTower::sweep() {
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

BankProductsTower::BankProductsTower(std::shared_ptr<EncoderModule> inner, int64_t n, int64_t m, int64_t d,
                                     int64_t passage_length)
    : AfterPassagesTower(std::move(inner), passage_length),
      rows_(unit_rows(torch::randn({n, d}))),
      passages_(unit_rows(torch::randn({n, d}))),
      query_bank_(unit_rows(torch::randn({m, d}))),
      passage_bank_(unit_rows(torch::randn({m, d}))),
      scores_(torch::empty({n, m})),
      bank_scores_(torch::empty({m, n})),
      row_gradient_(torch::empty({n, d})),
      passage_gradient_(torch::empty({n, d})) {}

void BankProductsTower::after_passages() {
  const torch::NoGradGuard no_grad;
  const double before = short_product_stats().seconds;
  row_dots_out(scores_, rows_, passage_bank_, kInverseTemperature);
  row_dots_out(bank_scores_, query_bank_, passages_, kInverseTemperature);
  // The scores stand in for the softmax weights: the same shapes and
  // layouts (the banked queries' transposed, as the loss passes them).
  row_gradient_.zero_();
  passage_gradient_.zero_();
  add_weighted_rows_(row_gradient_, scores_, passage_bank_);
  add_weighted_rows_(passage_gradient_, bank_scores_.t(), query_bank_);
  seconds_ += short_product_stats().seconds - before;
}

}  // namespace contaccum::bench
