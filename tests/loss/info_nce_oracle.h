#pragma once

// The closed-form float64 oracle of InfoNCE, written with Eigen: the loss
// and its gradients with respect to queries and passages derived by hand
// (softmax minus one-hot, chained through the similarity), independently of
// the block layout the library uses, with optional false-negative masks.
// Shared by tests/loss/info_nce_test.cpp and info_nce_masked_test.cpp.
#include "test_util.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace contaccum::test {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXd;

inline Mat to_eigen(const torch::Tensor& t2d) {
  auto c = t2d.to(torch::kDouble).contiguous();
  return Eigen::Map<const Mat>(c.data_ptr<double>(), c.size(0), c.size(1));
}

struct Oracle {
  double loss = 0.0;
  Mat grad_q;  // [n, d]
  Mat grad_p;  // [n * g, d], example-major like the input
};

// One candidate column: a vector and where its gradient goes (-1: constant).
struct Column {
  Vec v;
  int64_t grad_row = -1;  // row of grad_p
  bool bank = false;
  int64_t bank_index = -1;
  bool positive = false;
  int64_t flat = -1;  // bank columns: index among the bank's vectors (j * g_b + k)
};

// Identities for masking (empty: none): each current passage vector's and
// banked passage vector's, and each current / banked query's positives.
struct OracleIds {
  std::vector<int64_t> passages, bank_passages;
  std::vector<std::vector<int64_t>> positives, bank_positives;
  bool empty() const { return passages.empty(); }
};

inline Oracle oracle(const torch::Tensor& q, const torch::Tensor& p, const torch::Tensor& bq, const torch::Tensor& bp,
                     bool cosine, double tau, bool bank_as_negatives, const OracleIds& ids = {}) {
  const int64_t n = q.size(0), g = p.size(1), d = q.size(1);
  const Mat Q = to_eigen(q), P = to_eigen(p.reshape({n * g, d}));
  const int64_t m = bp.defined() ? bp.size(0) : 0, gb = bp.defined() ? bp.size(1) : 0;
  const Mat BP = m ? to_eigen(bp.reshape({m * gb, d})) : Mat(0, d);
  const int64_t mq = bq.defined() ? bq.size(0) : 0;
  const Mat BQ = mq ? to_eigen(bq) : Mat(0, d);

  // Spec layout: current positives, bank positives, current hard negatives
  // (example-major), bank hard negatives.
  std::vector<Column> cols;
  for (int64_t i = 0; i < n; ++i) cols.push_back({P.row(i * g).transpose(), i * g, false, -1, true});
  for (int64_t j = 0; j < m; ++j) cols.push_back({BP.row(j * gb).transpose(), -1, true, j, true, j * gb});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 1; k < g; ++k) cols.push_back({P.row(i * g + k).transpose(), i * g + k, false, -1, false});
  for (int64_t j = 0; j < m; ++j)
    for (int64_t k = 1; k < gb; ++k) cols.push_back({BP.row(j * gb + k).transpose(), -1, true, j, false, j * gb + k});

  const int64_t R = n + mq, C = static_cast<int64_t>(cols.size());
  auto sim = [&](const Vec& a, const Vec& b) { return cosine ? a.dot(b) / (a.norm() * b.norm()) : a.dot(b); };
  // d sim(a, b) / d a.
  auto dsim = [&](const Vec& a, const Vec& b) -> Vec {
    if (!cosine) return b;
    const double na = a.norm(), nb = b.norm();
    const double c = a.dot(b) / (na * nb);
    return (b / nb - c * a / na) / na;
  };
  Oracle out;
  out.grad_q = Mat::Zero(n, d);
  out.grad_p = Mat::Zero(n * g, d);
  // Row r's positives (empty without ids), and whether column c is one of
  // them other than the row's target (column r, or n + j for banked row j).
  auto masked = [&](int64_t r, int64_t c) {
    if (ids.empty()) return false;
    const int64_t target = r < n ? r : n + (r - n);
    const auto& pos = r < n ? ids.positives[r] : ids.bank_positives[r - n];
    const int64_t id = cols[c].bank ? ids.bank_passages[cols[c].flat] : ids.passages[cols[c].grad_row];
    return c != target && std::find(pos.begin(), pos.end(), id) != pos.end();
  };
  for (int64_t r = 0; r < R; ++r) {
    const bool bank_row = r >= n;
    const Vec row = bank_row ? Vec(BQ.row(r - n).transpose()) : Vec(Q.row(r).transpose());
    std::vector<double> s(C, -std::numeric_limits<double>::infinity());
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < C; ++c) {
      const bool allowed =
          !cols[c].bank || bank_as_negatives || (bank_row && cols[c].positive && cols[c].bank_index == r - n);
      if (!allowed || masked(r, c)) continue;
      s[c] = sim(row, cols[c].v) / tau;
      mx = std::max(mx, s[c]);
    }
    double z = 0.0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(s[c] - mx);
    const double lse = mx + std::log(z);
    out.loss += (lse - s[r]) / R;
    for (int64_t c = 0; c < C; ++c) {
      const double coef = ((std::isinf(s[c]) ? 0.0 : std::exp(s[c] - lse)) - (c == r ? 1.0 : 0.0)) / (R * tau);
      if (coef == 0.0) continue;
      if (!bank_row) out.grad_q.row(r) += coef * dsim(row, cols[c].v).transpose();
      if (cols[c].grad_row >= 0) out.grad_p.row(cols[c].grad_row) += coef * dsim(cols[c].v, row).transpose();
    }
  }
  return out;
}

}  // namespace contaccum::test
