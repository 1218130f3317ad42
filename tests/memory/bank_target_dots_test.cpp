// BankScoreCache::row_target_dot: each banked query's dot product with its own
// banked positive, computed once per written row, equals what the loss would
// compute from the whole banks (bit for bit, and float64 to rounding) after
// every write, through wrap-around, a rebuild and a checkpoint; and the loss
// given it is the loss without it, bit for bit.
#include "test_util.h"

namespace contaccum {
namespace {

torch::Tensor unit(const torch::Tensor& x) { return x / x.norm(2, {-1}, true); }

torch::Tensor targets_from_banks(const MemoryBank& queries, const MemoryBank& passages) {
  return banked_target_dots(queries.view().select(1, 0), passages.view().select(1, 0), torch::kFloat);
}

TEST(BankScoreCacheTargets, EqualTheLossesOwnThroughWrapsARebuildAndALoad) {
  torch::manual_seed(23);
  const auto loss = InfoNCEOptions().similarity(Similarity::Cosine).temperature(0.05);
  const auto options = BankScoreCacheOptions(8).loss(loss).normalized_rows(true);
  MemoryBank queries(37), passages(37);
  BankScoreCache cache(options);
  auto check = [&](const BankScoreCache& c, const std::string& when) {
    const auto want = targets_from_banks(queries, passages);
    const auto got = c.row_target_dot();
    ASSERT_TRUE(got.defined()) << when;
    EXPECT_TRUE(torch::equal(got, want)) << when;
    const auto oracle =
        (queries.view().select(1, 0).to(torch::kDouble) * passages.view().select(1, 0).to(torch::kDouble)).sum(1);
    EXPECT_LE((got.to(torch::kDouble) - oracle).abs().max().item<double>(), 1e-6) << when;
  };
  for (int64_t n : {8, 8, 5, 20, 8, 50, 3}) {
    const int64_t first = passages.head();
    queries.enqueue(unit(torch::randn({n, 48})));
    passages.enqueue(unit(torch::randn({n, 2, 48})));
    cache.update(queries, passages, first, n);
    check(cache, "after a write of " + std::to_string(n));
  }
  BankScoreCache rebuilt(options);
  rebuilt.rebuild(queries, passages);
  check(rebuilt, "rebuilt");
  MemoryBank q2(37), p2(37);
  auto qa = test::through_bytes(queries), pa = test::through_bytes(passages), ca = test::through_bytes(cache);
  q2.load(qa);
  p2.load(pa);
  BankScoreCache loaded(options);
  loaded.load(ca, q2, p2);
  EXPECT_TRUE(torch::equal(loaded.row_target_dot(), cache.row_target_dot()));
  cache.clear();
  EXPECT_FALSE(cache.row_target_dot().defined());
  // Rows the cache would normalise as copies: the loss computes the targets.
  BankScoreCache copies(BankScoreCacheOptions(8).loss(loss));
  copies.rebuild(queries, passages);
  EXPECT_FALSE(copies.row_target_dot().defined());
}

TEST(BankScoreCacheTargets, TheLossGivenThemIsTheLossWithoutThem) {
  torch::manual_seed(29);
  const double tau = 0.05;
  const auto loss = InfoNCEOptions().similarity(Similarity::Cosine).temperature(tau);
  const int64_t m = 40, n = 6, d = 16;
  InfoNCEBank bank;
  bank.queries = unit(torch::randn({m, d}));
  bank.passages = unit(torch::randn({m, 2, d}));
  bank.normalized = true;
  bank.row_logsumexp = bank_row_logsumexp(bank.queries, bank.passages, loss);
  auto run = [&](const InfoNCEBank& b) {
    const auto q = torch::randn({n, d}, torch::TensorOptions().requires_grad(true));
    const auto p = torch::randn({n, 2, d}, torch::TensorOptions().requires_grad(true));
    torch::manual_seed(31);
    q.data().copy_(torch::randn({n, d}));
    p.data().copy_(torch::randn({n, 2, d}));
    auto result = info_nce(q, p, loss, b);
    result.loss.backward();
    return std::tuple{result.loss.detach(), q.grad(), p.grad()};
  };
  const auto [plain, plain_q, plain_p] = run(bank);
  InfoNCEBank cached = bank;
  cached.row_target_dot = banked_target_dots(bank.queries, bank.passages.select(1, 0), torch::kFloat);
  const auto [with, with_q, with_p] = run(cached);
  EXPECT_TRUE(torch::equal(with, plain));
  EXPECT_TRUE(torch::equal(with_q, plain_q));
  EXPECT_TRUE(torch::equal(with_p, plain_p));
  // They are read: targets one higher lower each banked row's loss by 1 / tau
  // (the loss is the mean over the n + m rows; the row log-sum-exps are given).
  cached.row_target_dot = cached.row_target_dot + 1.0;
  const auto shifted = std::get<0>(run(cached));
  EXPECT_NEAR(shifted.item<double>(), plain.item<double>() - m / tau / (n + m), 1e-3);
  // Of another size: ignored.
  cached.row_target_dot = torch::zeros({m - 1});
  EXPECT_TRUE(torch::equal(std::get<0>(run(cached)), plain));
}

// Float32 and float64 rows on the CPU are summed in the documented order
// (element k into partial sum k mod 8, the sums added in one fixed tree), so
// a target's bits do not depend on the CPU's vector width: computed here one
// row at a time in that order, for widths with and without a remainder and
// rows that are strided views (a passage bank's first vectors).
template <typename T>
T dot_in_order(const T* x, const T* y, int64_t d) {
  T part[8] = {};
  for (int64_t k = 0; k < d; ++k) part[k % 8] += x[k] * y[k];
  return ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
}

template <typename T>
void expect_dots_in_order(torch::ScalarType type) {
  for (const int64_t d : {1, 8, 13, 48, 1027}) {
    const auto rows = torch::randn({9, d}, type), passages = torch::randn({9, 3, d}, type);
    const auto positives = passages.select(1, 0);
    const auto got = banked_target_dots(rows, positives, type);
    ASSERT_EQ(got.scalar_type(), type);
    for (int64_t r = 0; r < 9; ++r) {
      const auto q = rows[r].contiguous(), p = positives[r].contiguous();
      EXPECT_EQ(got[r].item<T>(), dot_in_order(q.data_ptr<T>(), p.data_ptr<T>(), d)) << "d " << d << ", row " << r;
    }
    const auto oracle = (rows.to(torch::kDouble) * positives.to(torch::kDouble)).sum(1);
    EXPECT_LE((got.to(torch::kDouble) - oracle).abs().max().item<double>(), 1e-4 * std::sqrt(double(d)));
  }
}

TEST(BankedTargetDots, SumInTheDocumentedOrderOnEveryCpu) {
  torch::manual_seed(31);
  expect_dots_in_order<float>(torch::kFloat);
  expect_dots_in_order<double>(torch::kDouble);
}

}  // namespace
}  // namespace contaccum
