// BankScoreCache against a from-scratch float64 oracle: after every write of
// a random sequence (aligned and unaligned writes, wrap-around, writes larger
// than the bank, clears, a rebuild), each banked query's log-sum-exp over the
// whole passage bank, computed directly from the banks' contents.
#include "test_util.h"

#include <random>
#include <sstream>

namespace contaccum {
namespace {

struct CacheCase {
  int64_t capacity, block, group;
  bool cosine;
  double tau;
  friend void PrintTo(const CacheCase& c, std::ostream* os) {
    *os << "cap" << c.capacity << "_block" << c.block << "_g" << c.group << (c.cosine ? "_cos" : "_dot") << "_tau"
        << c.tau;
  }
};

class BankScoreCacheOracle : public ::testing::TestWithParam<CacheCase> {};

TEST_P(BankScoreCacheOracle, MatchesTheOracleAfterEveryWrite) {
  const CacheCase c = GetParam();
  torch::manual_seed(77 + c.capacity + c.block);
  const auto loss = InfoNCEOptions().similarity(c.cosine ? Similarity::Cosine : Similarity::Dot).temperature(c.tau);
  MemoryBank queries(c.capacity), passages(c.capacity);
  BankScoreCache cache(BankScoreCacheOptions(c.block).loss(loss));
  const int64_t d = 6;
  std::mt19937 rng(static_cast<uint32_t>(c.capacity * 13 + c.block));
  std::uniform_int_distribution<int64_t> sizes(1, c.capacity + 3);
  for (int write = 0; write < 40; ++write) {
    // Mostly block-sized writes (as the strategies make), some ragged ones.
    const int64_t n = write % 3 == 2 ? sizes(rng) : c.block;
    const int64_t first = passages.head();
    queries.enqueue(torch::randn({n, d}));
    passages.enqueue(torch::randn({n, c.group, d}));
    cache.update(queries, passages, first, n);
    if (write == 17) {
      queries.clear();
      passages.clear();
      cache.clear();
      EXPECT_FALSE(cache.row_logsumexp().defined());
      continue;
    }
    const auto want = test::bank_logsumexp_oracle(queries, passages, loss);
    const auto got = cache.row_logsumexp();
    ASSERT_EQ(got.sizes(), want.sizes()) << "write " << write;
    EXPECT_LE((got.to(torch::kDouble) - want).abs().max().item<double>(),
              2e-5 * (1.0 + want.abs().max().item<double>()))
        << "write " << write << " of " << n << " rows";
  }
  // A rebuilt cache (after a checkpoint load) agrees with the incremental one.
  BankScoreCache rebuilt(BankScoreCacheOptions(c.block).loss(loss));
  rebuilt.rebuild(queries, passages);
  EXPECT_TRUE(torch::allclose(rebuilt.row_logsumexp(), cache.row_logsumexp(), 1e-5, 1e-5));

  // A saved and loaded cache is the incremental one bit for bit, and stays so
  // through further writes (what exact resume needs; a rebuild is not).
  torch::serialize::OutputArchive out;
  cache.save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  BankScoreCache loaded(BankScoreCacheOptions(c.block).loss(loss));
  loaded.load(in, queries, passages);
  EXPECT_TRUE(torch::equal(loaded.row_logsumexp(), cache.row_logsumexp()));
  for (int write = 0; write < 5; ++write) {
    const int64_t first = passages.head();
    queries.enqueue(torch::randn({c.block, d}));
    passages.enqueue(torch::randn({c.block, c.group, d}));
    cache.update(queries, passages, first, c.block);
    loaded.update(queries, passages, first, c.block);
    EXPECT_TRUE(torch::equal(loaded.row_logsumexp(), cache.row_logsumexp())) << "write " << write;
  }
  // A cache saved for other banks is refused.
  BankScoreCache other(BankScoreCacheOptions(c.block + 1).loss(loss));
  buffer.seekg(0);
  torch::serialize::InputArchive again;
  again.load_from(buffer);
  EXPECT_THAT([&] { other.load(again, queries, passages); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("saved block_slots")));
}

INSTANTIATE_TEST_SUITE_P(Cases, BankScoreCacheOracle,
                         ::testing::Values(CacheCase{32, 4, 2, false, 1.0},   // aligned blocks, hard negatives
                                           CacheCase{30, 4, 1, false, 0.5},   // capacity not a multiple of the block
                                           CacheCase{24, 8, 3, true, 0.05},   // cosine, low temperature
                                           CacheCase{7, 16, 2, false, 1.0},   // block larger than the bank
                                           CacheCase{16, 1, 2, true, 1.0}));  // one slot per block

TEST(BankScoreCache, EqualsBankRowLogSumExpInFloat64) {
  torch::manual_seed(5);
  MemoryBank queries(20), passages(20);
  BankScoreCache cache(BankScoreCacheOptions(6).loss(InfoNCEOptions().temperature(0.3)));
  for (int64_t n : {6, 6, 5, 6, 9}) {
    const int64_t first = passages.head();
    queries.enqueue(torch::randn({n, 4}, torch::kDouble));
    passages.enqueue(torch::randn({n, 2, 4}, torch::kDouble));
    cache.update(queries, passages, first, n);
  }
  const auto want = bank_row_logsumexp(queries.view().select(1, 0), passages.view(), InfoNCEOptions().temperature(0.3));
  EXPECT_LE((cache.row_logsumexp() - want).abs().max().item<double>(), 1e-12);
}

TEST(BankScoreCache, RejectsBanksThatDisagreeAndBadOptions) {
  MemoryBank queries(4), passages(5);
  queries.enqueue(torch::randn({2, 3}));
  passages.enqueue(torch::randn({2, 2, 3}));
  BankScoreCache cache;
  EXPECT_THAT(test::error_of([&] { cache.update(queries, passages, 0, 2); }),
              ::testing::HasSubstr("must hold the same examples (capacity 4 vs 5"));
  EXPECT_THAT(test::error_of([] { BankScoreCache(BankScoreCacheOptions(0)); }),
              ::testing::HasSubstr("block_slots must be > 0, got 0"));
  MemoryBank q4(4), p4(4);
  q4.enqueue(torch::randn({2, 3}));
  p4.enqueue(torch::randn({2, 2, 3}));
  EXPECT_THAT(test::error_of([&] { cache.update(q4, p4, 4, 2); }),
              ::testing::HasSubstr("first_slot must be in [0, 4), got 4"));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// Each banked query's log-sum-exp over the banked passage vectors that are
// not its false negatives (a passage identity among its positives, other
// than its own banked positive), by plain loops in float64.
torch::Tensor masked_oracle(const MemoryBank& queries, const MemoryBank& passages, double tau) {
  const auto q = queries.view().select(1, 0), p = passages.view();
  const auto positives = queries.ids(), ids = passages.ids();
  const int64_t m = q.size(0), g = p.size(1);
  auto out = torch::empty({m}, torch::kDouble);
  for (int64_t j = 0; j < m; ++j) {
    std::vector<double> scores;
    for (int64_t s = 0; s < m; ++s) {
      for (int64_t k = 0; k < g; ++k) {
        const int64_t id = ids[s][k].item<int64_t>();
        bool positive = false;
        for (int64_t t = 0; t < positives.size(1); ++t) positive |= id >= 0 && positives[j][t].item<int64_t>() == id;
        if (positive && !(s == j && k == 0)) continue;
        scores.push_back(q[j].dot(p[s][k]).item<double>() / tau);
      }
    }
    const double top = *std::max_element(scores.begin(), scores.end());
    double sum = 0.0;
    for (const double v : scores) sum += std::exp(v - top);
    out[j] = top + std::log(sum);
  }
  return out;
}

// Identities from a pool of 9 for 14 slots of 2 vectors: every banked query
// meets its positives elsewhere in the bank. Writes wrap, straddle blocks and
// exceed the bank; a save and load in the middle; masked entries never enter
// the cached log-sum-exps.
TEST(BankScoreCache, LeavesOutFalseNegativesThroughWrapsAndAResume) {
  torch::manual_seed(17);
  const double tau = 0.5;
  const auto options = BankScoreCacheOptions(4).loss(InfoNCEOptions().temperature(tau));
  MemoryBank queries(14), passages(14);
  BankScoreCache cache(options);
  auto write = [&](MemoryBank& q, MemoryBank& p, BankScoreCache& c, int64_t n) {
    const int64_t first = p.head();
    const auto passage_ids = torch::randint(9, {n, 2}, torch::kLong);
    auto positives = torch::cat({passage_ids.narrow(1, 0, 1), torch::randint(9, {n, 2}, torch::kLong)}, 1);
    q.enqueue(torch::randn({n, 5}, torch::kDouble), -1, positives);
    p.enqueue(torch::randn({n, 2, 5}, torch::kDouble), -1, passage_ids);
    c.update(q, p, first, n);
  };
  for (int64_t n : {4, 4, 3, 6, 5}) {
    write(queries, passages, cache, n);
    EXPECT_LE((cache.row_logsumexp() - masked_oracle(queries, passages, tau)).abs().max().item<double>(), 1e-12);
  }
  const auto unmasked = bank_row_logsumexp(queries.view().select(1, 0), passages.view(), options.loss());
  EXPECT_GT((unmasked - cache.row_logsumexp()).abs().max().item<double>(), 1e-3) << "entries were masked";
  MemoryBank q2(14), p2(14);
  auto qa = test::through_bytes(queries), pa = test::through_bytes(passages);
  q2.load(qa);
  p2.load(pa);
  BankScoreCache resumed(options);
  auto ca = test::through_bytes(cache);
  resumed.load(ca, q2, p2);
  EXPECT_TRUE(torch::equal(resumed.row_logsumexp(), cache.row_logsumexp()));
  EXPECT_TRUE(torch::equal(q2.ids(), queries.ids()));
  for (int64_t n : {4, 17, 2}) {
    torch::manual_seed(100 + n);
    write(queries, passages, cache, n);
    torch::manual_seed(100 + n);
    write(q2, p2, resumed, n);
    EXPECT_TRUE(torch::equal(resumed.row_logsumexp(), cache.row_logsumexp()));
    EXPECT_LE((cache.row_logsumexp() - masked_oracle(queries, passages, tau)).abs().max().item<double>(), 1e-12);
  }
  // A rebuild from the banks masks the same entries.
  BankScoreCache rebuilt(options);
  rebuilt.rebuild(queries, passages);
  EXPECT_LE((rebuilt.row_logsumexp() - cache.row_logsumexp()).abs().max().item<double>(), 1e-12);
}

}  // namespace
}  // namespace contaccum
