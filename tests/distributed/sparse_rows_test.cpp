// DistributedOptions::sparse_rows: gradients summed without the rows that are
// zero on every rank give the sums of the whole tensors (bit for bit at 2
// ranks, against float64 at 3), the same on every rank, and send only the
// flags and the rows some rank has nonzero.
#include "test_util.h"

#include <contaccum/distributed/process_group.h>

#include <cmath>
#include <limits>
#include <thread>

namespace contaccum {
namespace {

constexpr int64_t kTableRows = 300, kTableWidth = 6;

// Rank `r`'s tensors: an embedding-like table with a few rows of its own,
// a row every rank has, a row of -0.0 on rank 1 only and one of -0.0 on every
// rank; a table nonzero almost everywhere (sent whole); an all-zero table
// (nothing sent); a small matrix and a vector (never row-sparse); a float64
// table.
std::vector<torch::Tensor> rank_tensors(int64_t r, int64_t world, bool with_nan) {
  torch::manual_seed(100 + r);
  auto table = torch::zeros({kTableRows, kTableWidth});
  const auto rows = torch::randperm(kTableRows).slice(0, 0, 20);
  table.index_copy_(0, rows, torch::randn({20, kTableWidth}));
  table[7] = torch::randn({kTableWidth});
  if (r == 1) table[11].fill_(-0.0);
  table[12].fill_(-0.0);
  if (with_nan && r == world - 1) table[13][2] = std::numeric_limits<float>::quiet_NaN();
  auto dense = torch::randn({100, 3});
  dense.slice(0, 0, 10).zero_();
  auto f64 = torch::zeros({80, 2}, torch::kDouble);
  f64[r + 3] = torch::randn({2}, torch::kDouble);
  return {table, dense, torch::zeros({64, 2}), torch::randn({5, 3}), torch::randn({7}), f64};
}

std::vector<std::vector<torch::Tensor>> reduce_on_threads(int64_t world, bool sparse, bool with_nan,
                                                          std::vector<CollectiveTraffic>& traffic) {
  auto group = make_in_process_group(world, DistributedOptions().sparse_rows(sparse).timeout_seconds(60));
  std::vector<std::vector<torch::Tensor>> tensors;
  for (int64_t r = 0; r < world; ++r) tensors.push_back(rank_tensors(r, world, with_nan));
  traffic.assign(static_cast<size_t>(world), {});
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      const auto i = static_cast<size_t>(r);
      group[i]->all_reduce_sum(tensors[i]);
      traffic[i] = group[i]->traffic();
    });
  }
  for (auto& t : threads) t.join();
  return tensors;
}

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const auto as_int = a.scalar_type() == torch::kDouble ? torch::kLong : torch::kInt;
  return torch::equal(a.contiguous().view(as_int), b.contiguous().view(as_int));
}

TEST(SparseRows, SumsEqualTheWholeTensorsBitForBitAtTwoRanks) {
  for (const bool with_nan : {false, true}) {
    std::vector<CollectiveTraffic> traffic;
    const auto got = reduce_on_threads(2, true, with_nan, traffic);
    const auto whole = reduce_on_threads(2, false, with_nan, traffic);
    const auto a = rank_tensors(0, 2, with_nan), b = rank_tensors(1, 2, with_nan);
    for (size_t i = 0; i < a.size(); ++i) {
      const auto want = a[i] + b[i];
      for (size_t r = 0; r < 2; ++r) {
        EXPECT_TRUE(same_bits(got[r][i], want)) << "tensor " << i << " rank " << r;
        EXPECT_TRUE(same_bits(whole[r][i], want)) << "tensor " << i << " rank " << r;
      }
    }
    // -0.0 on one rank: +0.0; on both: -0.0, as the whole sum has it.
    EXPECT_FALSE(std::signbit(got[0][0][11][0].item<float>()));
    EXPECT_TRUE(std::signbit(got[0][0][12][0].item<float>()));
    EXPECT_EQ(std::isnan(got[1][0][13][2].item<float>()), with_nan);
  }
}

TEST(SparseRows, SumsMatchFloat64AtThreeRanksAndAgreeAcrossRanks) {
  std::vector<CollectiveTraffic> traffic;
  const auto got = reduce_on_threads(3, true, false, traffic);
  for (size_t i = 0; i < got[0].size(); ++i) {
    auto want = torch::zeros_like(got[0][i], torch::kDouble);
    for (int64_t r = 0; r < 3; ++r) want += rank_tensors(r, 3, false)[i].to(torch::kDouble);
    for (size_t r = 0; r < 3; ++r) {
      EXPECT_TRUE(same_bits(got[r][i], got[0][i])) << "tensor " << i << " rank " << r;
      EXPECT_TRUE(torch::allclose(got[r][i].to(torch::kDouble), want, 1e-6, 1e-6)) << "tensor " << i;
    }
  }
}

TEST(SparseRows, SendsTheFlagsAndOnlyTheRowsSomeRankHasNonzero) {
  std::vector<CollectiveTraffic> sparse, whole;
  reduce_on_threads(2, true, false, sparse);
  reduce_on_threads(2, false, false, whole);
  const auto a = rank_tensors(0, 2, false), b = rank_tensors(1, 2, false);
  int64_t whole_bytes = 0;
  for (const auto& t : a) whole_bytes += t.numel() * static_cast<int64_t>(t.element_size());
  // The table's rows nonzero (by bits) on either rank; the mostly dense table,
  // the matrix and the vector whole; the all-zero table nothing; the float64
  // table its 2 rows.
  const auto table_rows = ((a[0].view(torch::kInt) != 0) | (b[0].view(torch::kInt) != 0)).any(1).sum().item<int64_t>();
  const int64_t flags = (kTableRows + 100 + 64 + 80) * 4;
  const int64_t rows_sent = table_rows * kTableWidth * 4 + a[1].numel() * 4 + 15 * 4 + 7 * 4 + 2 * 2 * 8;
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(whole[r].all_reduce_bytes, whole_bytes);
    EXPECT_EQ(sparse[r].all_reduce_bytes, flags + rows_sent);
  }
  EXPECT_LT(sparse[0].all_reduce_bytes, whole_bytes / 2);
}

}  // namespace
}  // namespace contaccum
