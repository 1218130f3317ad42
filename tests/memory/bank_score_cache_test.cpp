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
