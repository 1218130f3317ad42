// BankScoreCache updated from the loss's own scores (InfoNCEBank::
// return_scores), as the strategies update it: after every write of a random
// sequence (filling, wrap-around, capacities that are not a multiple of the
// write, banks that keep hard negatives or positives only, writes larger than
// the bank, writes of several blocks that wrap), in float64 and in float32
// (where the log-sum-exps take the fused tile kernels), against the
// from-scratch oracle; proof that the scores are what the update used, and
// that scores for other banks are not; and that reading them in place gives
// the bits of assembling them.
#include "test_util.h"

namespace contaccum {
namespace {

struct ScoresCase {
  int64_t capacity, rows, group;
  bool bank_keeps_group, cosine;
  double tau;
  int64_t block = 0;  // the cache's block_slots; 0: the write's rows
  int64_t block_slots() const { return block > 0 ? block : rows; }
  friend void PrintTo(const ScoresCase& c, std::ostream* os) {
    *os << "cap" << c.capacity << "_rows" << c.rows << "_g" << c.group << (c.bank_keeps_group ? "_groups" : "_pos")
        << (c.cosine ? "_cos" : "_dot") << "_block" << c.block_slots();
  }
};

// One simulated micro-batch: the loss against the banks as they are, then the
// enqueue the strategy makes, and the score cache's update.
struct SimulatedBanks {
  InfoNCEOptions loss;
  MemoryBank queries, passages;
  BankScoreCache cache;
  bool keeps_group;

  SimulatedBanks(const ScoresCase& c, int64_t block)
      : loss(InfoNCEOptions().similarity(c.cosine ? Similarity::Cosine : Similarity::Dot).temperature(c.tau)),
        queries(c.capacity),
        passages(c.capacity),
        cache(BankScoreCacheOptions(block).loss(loss).normalized_rows(c.cosine)),
        keeps_group(c.bank_keeps_group) {}

  InfoNCEBank view() const {
    InfoNCEBank bank;
    if (passages.empty()) return bank;
    bank.passages = passages.view();
    bank.queries = queries.view().select(1, 0);
    bank.row_logsumexp = cache.row_logsumexp();
    bank.normalized = loss.similarity() == Similarity::Cosine;
    bank.return_scores = true;
    return bank;
  }
  torch::Tensor stored(const torch::Tensor& x) const {
    return loss.similarity() == Similarity::Cosine ? x / x.norm(2, {-1}, true) : x;
  }
  // The loss's scores for q, p against the banks now (`return_scores`).
  InfoNCEBankScores scores_for(const torch::Tensor& q, const torch::Tensor& p) const {
    auto bank = view();
    bank.return_scores = true;
    return info_nce(q, p, loss, bank).bank_scores;
  }
  void write(const torch::Tensor& q, const torch::Tensor& p, const InfoNCEBankScores& scores) {
    const int64_t first = passages.head();
    queries.enqueue(stored(q));
    passages.enqueue(stored(keeps_group ? p : p.slice(1, 0, 1)));
    cache.update(queries, passages, first, q.size(0), scores);
  }
};

class BankScoreCacheFromScores : public ::testing::TestWithParam<ScoresCase> {};

// A random sequence of writes for case `c`, rows in `type`: `visit(write,
// q, p)` for each.
template <typename Visit>
void for_each_write(const ScoresCase& c, torch::ScalarType type, uint64_t seed, const Visit& visit) {
  torch::manual_seed(seed);
  const int64_t d = 5;
  for (int write = 0; write < 3 * c.capacity / c.rows + 4; ++write) {
    const auto q = torch::randn({c.rows, d}, type);
    const auto p = torch::randn({c.rows, c.group, d}, type);
    visit(write, q, p);
  }
}

// Every write of a random sequence, each checked against the oracle (in
// float64 from the stored rows) to `tolerance` times (1 + the largest
// log-sum-exp).
void check_every_write(const ScoresCase& c, torch::ScalarType type, double tolerance) {
  SimulatedBanks banks(c, c.block_slots()), doubled(c, c.block_slots());
  for_each_write(
      c, type, 910 + c.capacity * 7 + c.rows, [&](int write, const torch::Tensor& q, const torch::Tensor& p) {
        const auto scores = banks.scores_for(q, p);
        // The loss keeps (and so returns) its scores at these sizes.
        ASSERT_TRUE(scores.defined()) << "write " << write;
        banks.write(q, p, scores);
        const auto want = test::bank_logsumexp_oracle(banks.queries, banks.passages, banks.loss);
        const auto got = banks.cache.row_logsumexp().to(torch::kDouble);
        ASSERT_EQ(got.sizes(), want.sizes()) << "write " << write;
        EXPECT_LE((got - want).abs().max().item<double>(), tolerance * (1.0 + want.abs().max().item<double>()))
            << "write " << write;
        // The same write given doubled scores goes wrong: the update read them.
        const auto s2 = doubled.scores_for(q, p);
        doubled.write(q, p, {s2.current_by_current * 2, s2.current_by_bank * 2, s2.bank_by_current * 2});
        EXPECT_GT((doubled.cache.row_logsumexp().to(torch::kDouble) - want).abs().max().item<double>(), 1e-3)
            << "write " << write;
        doubled.cache.rebuild(doubled.queries, doubled.passages);
      });
}

TEST_P(BankScoreCacheFromScores, MatchesTheOracleAfterEveryWrite) {
  check_every_write(GetParam(), torch::kDouble, 1e-12);
}

// In float32 the log-sum-exps go through the fused tile kernels
// (softmax_tile.h) wherever the layouts allow: float32's rounding.
TEST_P(BankScoreCacheFromScores, MatchesTheOracleInFloat32AfterEveryWrite) {
  check_every_write(GetParam(), torch::kFloat, 2e-6);
}

// Where a write fills whole blocks of full banks that keep whole groups, the
// update reads the written rows' scores where the loss left them instead of
// assembling them in a buffer: the same bits as assembling them, which the
// same scores laid out column-major (so not readable in place) force.
void check_in_place_against_assembled(const ScoresCase& c, torch::ScalarType type) {
  SimulatedBanks in_place(c, c.block_slots()), assembled(c, c.block_slots());
  for_each_write(
      c, type, 4100 + c.capacity * 3 + c.rows, [&](int write, const torch::Tensor& q, const torch::Tensor& p) {
        const auto scores = in_place.scores_for(q, p);
        ASSERT_TRUE(scores.defined()) << "write " << write;
        auto relaid = scores;
        if (scores.current_by_bank.defined()) relaid.current_by_bank = scores.current_by_bank.t().contiguous().t();
        in_place.write(q, p, scores);
        assembled.write(q, p, relaid);
        EXPECT_TRUE(torch::equal(in_place.cache.row_logsumexp(), assembled.cache.row_logsumexp())) << "write " << write;
      });
}

TEST_P(BankScoreCacheFromScores, ReadsFullBlocksInPlaceWithTheBitsOfAssemblingThem) {
  check_in_place_against_assembled(GetParam(), torch::kFloat);
  check_in_place_against_assembled(GetParam(), torch::kDouble);
}

INSTANTIATE_TEST_SUITE_P(Cases, BankScoreCacheFromScores,
                         ::testing::Values(ScoresCase{16, 4, 3, true, false, 1.0},   // aligned, hard negatives
                                           ScoresCase{16, 4, 3, false, true, 0.05},  // positives only, cosine
                                           ScoresCase{30, 4, 2, true, true, 0.5},    // 30 slots: writes wrap mid-block
                                           ScoresCase{7, 3, 1, true, false, 1.0},    // tiny bank, odd writes
                                           ScoresCase{8, 8, 2, true, false, 1.0},    // each write replaces the bank
                                           // Writes of two blocks that wrap at a block's end: the second
                                           // block's leaves of the rows written into the first come from
                                           // the written rows' scores, not from the rows they replaced.
                                           ScoresCase{12, 8, 2, true, false, 1.0, 4}));

// Scores shaped for other banks or another write are ignored: the update
// multiplies, and the cache stays right.
TEST(BankScoreCacheFromScores, IgnoresScoresOfAnotherWrite) {
  torch::manual_seed(4);
  SimulatedBanks banks(ScoresCase{12, 4, 2, true, false, 1.0}, 4);
  const auto rows = [](int64_t n) {
    return std::pair{torch::randn({n, 5}, torch::kDouble), torch::randn({n, 2, 5}, torch::kDouble)};
  };
  const auto check = [&](const char* what) {
    const auto want = test::bank_logsumexp_oracle(banks.queries, banks.passages, banks.loss);
    EXPECT_LE((banks.cache.row_logsumexp() - want).abs().max().item<double>(), 1e-12) << what;
  };
  auto [q1, p1] = rows(4);
  banks.write(q1, p1, banks.scores_for(q1, p1));
  auto [q2, p2] = rows(4);
  const auto against_four = banks.scores_for(q2, p2);
  banks.write(q2, p2, against_four);
  auto [q3, p3] = rows(4);
  banks.write(q3, p3, against_four);  // scored against 4 banked rows; the banks held 8
  check("scores against a smaller bank");
  auto [q4, p4] = rows(4);
  auto [q5, p5] = rows(3);
  banks.write(q4, p4, banks.scores_for(q5, p5));  // 3 rows scored, 4 written
  check("scores of fewer rows");
  auto [q6, p6] = rows(4);
  banks.write(q6, p6, InfoNCEBankScores());
  check("no scores");
}

}  // namespace
}  // namespace contaccum
