#pragma once
// Internal: CPython's random.Random, so a seed shuffles the Debian data set
// exactly as build.py does. Not installed.

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace contaccum {
namespace detail {

// CPython's random.Random: MT19937 seeded by init_by_array with the seed's
// 32-bit words, and shuffle() by rejection-sampled getrandbits, so a seed
// gives build.py's order.

class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed) {
    std::array<uint32_t, 2> key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
    init_by_array(key.data(), key[1] != 0 ? 2 : 1);
  }

  template <typename T>
  void shuffle(std::vector<T>& x) {
    for (size_t i = x.size(); i-- > 1;) std::swap(x[i], x[below(static_cast<uint32_t>(i + 1))]);
  }

 private:
  static constexpr int N = 624, M = 397;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < N; ++i) mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = N;
  }

  void init_by_array(const uint32_t* key, int length) {
    init_genrand(19650218U);
    int i = 1, j = 0;
    for (int k = std::max(N, length); k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
      if (++j >= length) j = 0;
    }
    for (int k = N - 1; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
      if (++i >= N) {
        mt_[0] = mt_[N - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000U;
  }

  uint32_t next() {
    if (index_ >= N) {
      for (int k = 0; k < N; ++k) {
        const uint32_t y = (mt_[k] & 0x80000000U) | (mt_[(k + 1) % N] & 0x7FFFFFFFU);
        mt_[k] = mt_[(k + M) % N] ^ (y >> 1) ^ ((y & 1U) ? 0x9908B0DFU : 0U);
      }
      index_ = 0;
    }
    uint32_t y = mt_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680U;
    y ^= (y << 15) & 0xEFC60000U;
    y ^= y >> 18;
    return y;
  }

  // random._randbelow_with_getrandbits(n), n <= 2^32 - 1.
  uint32_t below(uint32_t n) {
    int bits = 0;
    while (bits < 32 && (n >> bits) != 0) ++bits;
    for (;;) {
      const uint32_t r = next() >> (32 - bits);
      if (r < n) return r;
    }
  }

  std::array<uint32_t, N> mt_{};
  int index_ = N;
};

}  // namespace detail
}  // namespace contaccum
