#pragma once

// What the tests of the loss's kernels share: the instruction sets this CPU
// runs, a guard that restores the kernels' settings, and a bitwise equality.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <limits>
#include <vector>

#include "contaccum/core/compute_threads.h"
#include "contaccum/loss/short_products.h"

namespace contaccum {
namespace {

constexpr double kUnit = std::numeric_limits<float>::epsilon() / 2;  // float32's unit roundoff

std::vector<ShortProductIsa> isas_this_cpu_runs() {
  std::vector<ShortProductIsa> out{ShortProductIsa::Portable};
  if (best_short_product_isa() != ShortProductIsa::Portable) out.push_back(ShortProductIsa::Avx2);
  if (best_short_product_isa() == ShortProductIsa::Avx512) out.push_back(ShortProductIsa::Avx512);
  return out;
}

// Restores the instruction set and the thread counts whatever the test does.
struct ProductSettings {
  ShortProductIsa isa = short_product_isa();
  bool enabled = short_products_enabled();
  int blas = blas_threads(), torch = torch::get_num_threads();
  ~ProductSettings() {
    set_short_product_isa(isa);
    set_short_products_enabled(enabled);
    if (blas > 0) set_compute_threads(blas);
    torch::set_num_threads(torch);
  }
};

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.contiguous(), y = b.contiguous();
  return x.sizes() == y.sizes() &&
         std::memcmp(x.data_ptr<float>(), y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(x.numel())) == 0;
}

}  // namespace
}  // namespace contaccum
