// exact_search against a full score matrix: torch::topk for the values, and
// an independent stable sort for the rows (lower row first among ties), on
// random shapes with blocks smaller than k, k > N and many ties.
#include "test_util.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace contaccum {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// The first `k` columns of each row of `scores` by (score desc, column asc).
std::vector<std::vector<int64_t>> oracle_rows(const torch::Tensor& scores, int64_t k) {
  const auto s = scores.to(torch::kDouble).contiguous();
  const auto* p = s.data_ptr<double>();
  const int64_t rows = s.size(0), cols = s.size(1);
  std::vector<std::vector<int64_t>> out;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> order(static_cast<size_t>(cols));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return p[r * cols + a] > p[r * cols + b]; });
    order.resize(static_cast<size_t>(std::min(k, cols)));
    out.push_back(order);
  }
  return out;
}

std::vector<std::vector<int64_t>> rows_of(const torch::Tensor& indices) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t r = 0; r < indices.size(0); ++r) {
    const auto row = indices[r].contiguous();
    out.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
  }
  return out;
}

TEST(Search, MatchesFullTopkWithTiesOnRandomShapes) {
  std::mt19937_64 rng(7);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  torch::manual_seed(7);
  for (int trial = 0; trial < 60; ++trial) {
    const int64_t q = uniform(1, 40), n = uniform(1, 300), dim = uniform(1, 6), k = uniform(1, n + 20);
    const auto options =
        SearchOptions().k(k).query_block(uniform(1, q + 3)).corpus_block(uniform(1, std::min(n, k) + 10));
    // Small integers: products are exact in float32, so the blocked and the
    // full products agree bit for bit and ties are everywhere (dim 1 has
    // only 7 distinct scores per query).
    const auto queries = torch::randint(-3, 4, {q, dim}).to(torch::kFloat);
    auto corpus = torch::randint(-3, 4, {n, dim}).to(torch::kFloat);
    if (trial % 4 == 0) corpus.slice(0, 0, n / 2).copy_(corpus.slice(0, n - n / 2));  // duplicate rows across blocks
    const auto got = exact_search(queries, corpus, options);
    const int64_t width = std::min(k, n);
    ASSERT_EQ(got.scores.sizes(), (std::vector<int64_t>{q, width})) << "trial " << trial;
    ASSERT_EQ(got.indices.sizes(), (std::vector<int64_t>{q, width}));
    EXPECT_EQ(got.scores.scalar_type(), torch::kFloat);
    EXPECT_EQ(got.indices.scalar_type(), torch::kLong);
    const auto full = queries.matmul(corpus.t());
    const auto want_values = std::get<0>(full.topk(width, 1));
    EXPECT_TRUE(torch::equal(got.scores, want_values)) << "trial " << trial << " k " << k << " n " << n;
    EXPECT_EQ(rows_of(got.indices), oracle_rows(full, width))
        << "trial " << trial << " q " << q << " n " << n << " k " << k << " blocks " << options.query_block() << "/"
        << options.corpus_block();
  }
}

TEST(Search, MatchesFullTopkOnContinuousScores) {
  torch::manual_seed(11);
  for (const auto dtype : {torch::kDouble, torch::kFloat}) {
    const auto queries = torch::randn({37, 24}, dtype), corpus = torch::randn({503, 24}, dtype);
    const auto got = exact_search(queries, corpus, SearchOptions().k(50).query_block(8).corpus_block(30));
    EXPECT_EQ(got.scores.scalar_type(), dtype);
    torch::Tensor values, rows;
    std::tie(values, rows) = queries.matmul(corpus.t()).topk(50, 1);
    const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
    EXPECT_LE((got.scores - values).abs().max().item<double>(), tol);
    // Distinct continuous scores differ by far more than the rounding of the
    // blocked products, so the rows must agree exactly.
    EXPECT_TRUE(torch::equal(got.indices, rows));
  }
}

TEST(Search, AllTiedGivesLowestRowsInOrder) {
  const auto queries = torch::randn({5, 3});
  const auto corpus = torch::ones({97, 3}).mul_(0.5);
  corpus[40].fill_(2.0);  // positive queries rank row 40 first, negative ones last
  const auto got = exact_search(queries.abs(), corpus, SearchOptions().k(10).corpus_block(7).query_block(2));
  for (int64_t r = 0; r < 5; ++r) {
    EXPECT_EQ(got.indices[r][0].item<int64_t>(), 40);
    for (int64_t j = 1; j < 10; ++j) EXPECT_EQ(got.indices[r][j].item<int64_t>(), j - 1);
  }
  const auto zero = exact_search(torch::zeros({2, 3}), corpus, SearchOptions().k(4).corpus_block(3));
  EXPECT_TRUE(torch::equal(zero.indices, torch::arange(4).expand({2, 4})));
}

TEST(Search, ShapesDtypesAndEdges) {
  const auto queries = torch::randn({4, 8}), corpus = torch::randn({6, 8});
  auto r = exact_search(queries, corpus, SearchOptions().k(100));
  EXPECT_EQ(r.indices.sizes(), (std::vector<int64_t>{4, 6}));  // k' = min(k, N)
  // Every row listed once when k >= N.
  EXPECT_TRUE(torch::equal(std::get<0>(r.indices.sort(1)), torch::arange(6).expand({4, 6})));
  r = exact_search(queries, torch::empty({0, 8}));
  EXPECT_EQ(r.indices.sizes(), (std::vector<int64_t>{4, 0}));
  r = exact_search(torch::empty({0, 8}), corpus, SearchOptions().k(3));
  EXPECT_EQ(r.scores.sizes(), (std::vector<int64_t>{0, 3}));
  // Mixed precision promotes to float64; half precision scores in float32.
  r = exact_search(queries, corpus.to(torch::kDouble));
  EXPECT_EQ(r.scores.scalar_type(), torch::kDouble);
  r = exact_search(queries.to(torch::kHalf), corpus.to(torch::kHalf), SearchOptions().k(2));
  EXPECT_EQ(r.scores.scalar_type(), torch::kFloat);
  // Inputs needing gradients give plain results.
  r = exact_search(queries.clone().requires_grad_(), corpus);
  EXPECT_FALSE(r.scores.requires_grad());
  EXPECT_TRUE(r.scores.device().is_cpu());
}

TEST(Search, BadInputNamesOptionAndValue) {
  const auto q = torch::randn({2, 3}), c = torch::randn({5, 3});
  auto fails = [](auto&& fn, const std::string& msg) {
    EXPECT_THAT(fn, ThrowsMessage<c10::Error>(HasSubstr(msg))) << msg;
  };
  fails([&] { exact_search(q, c, SearchOptions().k(0)); }, "SearchOptions::k must be > 0, got 0");
  fails([&] { exact_search(q, c, SearchOptions().query_block(-1)); }, "SearchOptions::query_block must be > 0, got -1");
  fails([&] { exact_search(q, c, SearchOptions().corpus_block(0)); }, "SearchOptions::corpus_block must be > 0, got 0");
  fails([&] { exact_search(q, torch::randn({5, 4})); }, "queries dim (3) must equal corpus dim (4)");
  fails([&] { exact_search(torch::randn({3}), c); }, "queries must be [Q, dim], got [3]");
  fails([&] { exact_search(q, torch::Tensor()); }, "corpus must be [N, dim], got []");
  fails([&] { exact_search(q, torch::ones({5, 3}, torch::kLong)); }, "must be floating point, got Float and Long");
}

}  // namespace
}  // namespace contaccum
