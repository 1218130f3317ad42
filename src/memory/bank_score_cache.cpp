#include "contaccum/memory/bank_score_cache.h"

#include "contaccum/core/strided_view.h"
#include "contaccum/core/unit_rows.h"
#include "contaccum/loss/short_products.h"
#include "contaccum/loss/softmax_tile.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace contaccum {

BankScoreCache::BankScoreCache(BankScoreCacheOptions options) : options_(options) {
  TORCH_CHECK(options_.block_slots() > 0, "BankScoreCacheOptions::block_slots must be > 0, got ",
              options_.block_slots());
  TORCH_CHECK(options_.loss().temperature() > 0.0, "BankScoreCacheOptions::loss.temperature must be > 0, got ",
              options_.loss().temperature());
}

void BankScoreCache::check_banks(const MemoryBank& queries, const MemoryBank& passages) const {
  TORCH_CHECK(queries.capacity() == passages.capacity() && queries.size() == passages.size() &&
                  queries.head() == passages.head(),
              "BankScoreCache: the query and passage banks must hold the same examples (capacity ", queries.capacity(),
              " vs ", passages.capacity(), ", size ", queries.size(), " vs ", passages.size(), ", head ",
              queries.head(), " vs ", passages.head(), ")");
  TORCH_CHECK(queries.empty() || queries.dim() == passages.dim(), "BankScoreCache: query dim ", queries.dim(),
              " != passage dim ", passages.dim());
}

namespace {
// The cache's tensors never enter an autograd graph (the loss reads copies:
// row_logsumexp, row_target_dot), so every method that writes them runs in
// inference mode: LibTorch then skips the autograd bookkeeping of each
// view and in-place op, which an update makes a few hundred of (at the main
// job's sizes the update took 146 us in it against 213 under NoGradGuard,
// the fastest of 2,000, bench/banks). Tensors made here are inference
// tensors, so each method that writes one in place is in this mode too.
using InternalMode = c10::InferenceMode;

// The type the cache computes in: the banks' own, or float32 for banks
// stored in a reduced type (`MemoryBankOptions::dtype`).
torch::ScalarType compute_type(const torch::Tensor& stored) {
  const auto type = stored.scalar_type();
  return type == torch::kBFloat16 || type == torch::kHalf ? torch::kFloat : type;
}
torch::TensorOptions compute_options(const torch::Tensor& stored) {
  return stored.options().dtype(compute_type(stored));
}
torch::Tensor upcast(const torch::Tensor& stored) { return stored.to(compute_type(stored)); }

// `x`'s dimensions `in` (ascending) as one (size, stride), when they are laid
// out as one strided dimension; size 0 when they are not.
std::pair<int64_t, int64_t> merged(const torch::Tensor& x, const std::vector<int64_t>& in) {
  int64_t size = 1, stride = 1;
  bool first = true;
  for (auto it = in.rbegin(); it != in.rend(); ++it) {
    if (x.size(*it) == 1) continue;
    if (first) {
      stride = x.stride(*it);
      first = false;
    } else if (x.stride(*it) != stride * size) {
      return {0, 0};
    }
    size *= x.size(*it);
  }
  return {size, stride};
}

// logsumexp_into's fused form (softmax_tile.h, one read of `x`), when the
// reduced dimensions of a float32 CPU `x` form one strided dimension and the
// kept ones another: each kept entry's maximum and sum of exps in `scratch`,
// then their log-sum-exp copied into `out`. An entry that sees only -inf
// gives -inf, as torch::logsumexp does.
bool fused_logsumexp_into(const torch::Tensor& x, at::IntArrayRef dims, torch::Tensor& out, torch::Tensor& scratch) {
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat) return false;
  std::vector<int64_t> reduced(dims.begin(), dims.end()), kept;
  std::sort(reduced.begin(), reduced.end());
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(reduced.begin(), reduced.end(), d)) kept.push_back(d);
  const auto [columns, column_stride] = merged(x, reduced);
  const auto [rows, row_stride] = merged(x, kept);
  if (columns == 0 || rows == 0 || columns * rows != x.numel()) return false;
  if (!scratch.defined() || scratch.numel() < 2 * rows || scratch.scalar_type() != x.scalar_type() ||
      scratch.device() != x.device()) {
    scratch = torch::empty({std::max<int64_t>(2 * rows, x.numel())}, x.options());
  }
  // Filled through the pointer: two ATen calls fewer for every leaf update.
  float* start = scratch.data_ptr<float>();
  std::fill(start, start + rows, -std::numeric_limits<float>::infinity());
  std::fill(start + rows, start + 2 * rows, 0.0f);
  auto max = narrow_view(scratch, 0, 0, rows), sum = narrow_view(scratch, 0, rows, rows);
  const auto tile = x.as_strided({rows, columns}, {row_stride, column_stride});
  if (!fold_logsumexp_tile(tile, max, sum, /*masked=*/true)) return false;
  if (!tile_add_log_out(max, max, sum)) max.add_(sum.log_());
  out.copy_(max.view(out.sizes()));
  return true;
}

// torch::logsumexp of `x` over `dims` into `out`: fused where the layout
// allows (above); else with the same arithmetic as torch's (the maximum,
// held at 0 where it is infinite, subtracted; exp; sum; log; the maximum
// added back), but its element-wise pass in `scratch`, reused, laid out like
// `x`: no tile-sized temporary is allocated, and a transposed `x` (the loss
// keeps the banked rows' scores so) is read in its own order instead of
// being copied into rows first.
void logsumexp_into(const torch::Tensor& x, at::IntArrayRef dims, torch::Tensor out, torch::Tensor& scratch) {
  if (x.numel() == 0) {
    out.fill_(-std::numeric_limits<double>::infinity());
    return;
  }
  if (fused_logsumexp_into(x, dims, out, scratch)) return;
  auto maxes = at::amax(x, dims, /*keepdim=*/true);
  maxes.masked_fill_(maxes.abs() == std::numeric_limits<double>::infinity(), 0);
  // The scratch pass laid out in x's order of dimensions (by stride),
  // without gaps: a slice of a transposed tile is read and written in the
  // same order.
  std::vector<int64_t> order(static_cast<size_t>(x.dim()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.stride(a) > x.stride(b); });
  std::vector<int64_t> strides(order.size());
  int64_t step = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    strides[static_cast<size_t>(*it)] = step;
    step *= x.size(*it);
  }
  if (!scratch.defined() || scratch.numel() < x.numel() || scratch.scalar_type() != x.scalar_type() ||
      scratch.device() != x.device()) {
    scratch = torch::empty({x.numel()}, x.options());
  }
  auto pass = scratch.as_strided(x.sizes(), strides);
  at::sub_out(pass, x, maxes).exp_();
  at::sum_out(out, pass, dims);
  out.log_().add_(maxes.view(out.sizes()));
}
}  // namespace

torch::Tensor BankScoreCache::rows(const MemoryBank& queries) const {
  auto r = upcast(queries.view().select(1, 0));
  if (normalizes()) r = unit_rows(r);
  return r;
}

torch::Tensor BankScoreCache::columns(const MemoryBank& passages, int64_t begin, int64_t end) const {
  auto c = upcast(passages.view().slice(0, begin, end).reshape({-1, passages.dim()}));
  if (normalizes()) c = unit_rows(c);
  return c;
}

IdentityMask BankScoreCache::false_negatives(const MemoryBank& queries, const MemoryBank& passages, int64_t row_begin,
                                             int64_t row_end, int64_t begin, int64_t end) const {
  const auto positives = queries.ids(), ids = passages.ids();
  if (!positives.defined() || !ids.defined()) return {};
  const int64_t g = passages.entries_per_row();
  auto columns = ids.slice(0, begin, end);
  if (columns.size(1) < g) {
    columns = torch::cat({columns, torch::full({end - begin, g - columns.size(1)}, -1, torch::kLong)}, 1);
  }
  // Row i (bank row row_begin + i) keeps its own banked positive, column
  // (row_begin + i - begin) g of these.
  return IdentityMask::of(positives.slice(0, row_begin, row_end), narrow_view(columns, 1, 0, g), g,
                          (row_begin - begin) * g);
}

// Recomputes the tree's inner nodes above leaves [first_leaf, last_leaf] for
// bank rows [begin, end). Nodes across all rows are contiguous, so each level
// is one vectorised log-add-exp of the children, the tile kernels' own
// (softmax_tile.h: the same bits on every CPU, where ATen's depend on its
// vector width) for float32 on the CPU. Each level's three views
// are made with one as_strided each: slicing and selecting them made about
// a dozen ATen calls a level, each a fixed cost (bench/banks counts a step's
// calls) larger than a micro-batch's share of the log-add-exps.
void BankScoreCache::refresh_parents(int64_t first_leaf, int64_t last_leaf, int64_t begin, int64_t end) {
  const int64_t leaves = tree_.size(0) / 2, node = tree_.stride(0), slot = tree_.stride(1);
  const int64_t first_column = tree_.storage_offset() + begin * slot;
  // `count` nodes from node `first`, every `step`-th, columns [begin, end).
  const auto nodes = [&](int64_t first, int64_t count, int64_t step) {
    return tree_.as_strided({count, end - begin}, {step * node, slot}, first_column + first * node);
  };
  int64_t lo = leaves + first_leaf, hi = leaves + last_leaf;
  if (tree_.device().is_cpu() && tree_.scalar_type() == torch::kFloat && slot == 1 && short_products_enabled()) {
    // Row by row with the kernel tile_logaddexp_out runs on each row of the
    // views below (the same bits), without making three views per level.
    float* const columns = tree_.data_ptr<float>() + begin;
    for (; lo > 1; lo /= 2, hi /= 2)
      for (int64_t parent = lo / 2; parent <= hi / 2; ++parent)
        tile_logaddexp_floats(columns + parent * node, columns + 2 * parent * node, columns + (2 * parent + 1) * node,
                              end - begin);
    return;
  }
  while (lo > 1) {
    lo /= 2;
    hi /= 2;
    const int64_t count = hi - lo + 1;
    auto parents = nodes(lo, count, 1);
    const auto left = nodes(2 * lo, count, 2), right = nodes(2 * lo + 1, count, 2);
    if (!tile_logaddexp_out(parents, left, right)) at::logaddexp_out(parents, left, right);
  }
}

// Every valid row against the slots of blocks [first_block, last_block]:
// from `written` where a block's slots were all written by this update, else
// multiplied here.
void BankScoreCache::recompute_blocks(const MemoryBank& queries, const MemoryBank& passages, int64_t first_block,
                                      int64_t last_block, const WrittenScores* written) {
  const int64_t b = options_.block_slots(), leaves = tree_.size(0) / 2;
  const double inv_tau = 1.0 / options_.loss().temperature();
  torch::Tensor rows;  // the banked rows, made only for a block that is multiplied
  for (int64_t block = first_block; block <= last_block; ++block) {
    const int64_t begin = block * b, end = std::min(size_, begin + b);
    auto leaf = tree_.select(0, leaves + block).slice(0, 0, size_);
    const int64_t example = written ? written->example_at(begin, end) : -1;
    if (begin >= end) {
      leaf.fill_(-std::numeric_limits<double>::infinity());
    } else if (example >= 0) {
      written_block_logsumexp(example, end - begin, leaf);
    } else {
      // [(end - begin) g, size]: reduced over the short leading dimension.
      if (!rows.defined()) rows = this->rows(queries);
      auto s = torch::matmul(columns(passages, begin, end), rows.t()).mul_(inv_tau);
      false_negatives(queries, passages, 0, size_, begin, end).apply(s, 0, 0, /*transposed=*/true);
      logsumexp_into(s, {0}, leaf, logsumexp_scratch_);
    }
  }
  refresh_parents(first_block, last_block, 0, size_);
}

void BankScoreCache::written_block_logsumexp(int64_t first_example, int64_t count, torch::Tensor leaf) {
  auto& w = written_;
  // The rows banked before the write, then the written rows (over the old
  // ones in their slots when the banks were full).
  if (w.before_by_written.defined() && w.before_by_written.size(0) > 0) {
    const int64_t before = w.before_by_written.size(0);
    logsumexp_into(narrow_view(w.before_by_written, 1, first_example, count), {1, 2}, narrow_view(leaf, 0, 0, before),
                   logsumexp_scratch_);
  }
  for (const auto& run : w.runs) {
    logsumexp_into(
        narrow_view(narrow_view(w.written_by_written, 0, run.first_example, run.count), 1, first_example, count),
        {1, 2}, narrow_view(leaf, 0, run.first_slot, run.count), logsumexp_scratch_);
  }
}

// Rows [begin, end) against every valid slot: from `written` when given (the
// rows were all written by this update), else multiplied here.
void BankScoreCache::recompute_rows(const MemoryBank& queries, const MemoryBank& passages, int64_t begin, int64_t end,
                                    const WrittenScores* written) {
  if (begin >= end) return;
  const int64_t b = options_.block_slots(), g = passages.entries_per_row(), w = end - begin;
  const int64_t full_blocks = size_ / b, rest = size_ - full_blocks * b, leaves = tree_.size(0) / 2;
  const double inv_tau = 1.0 / options_.loss().temperature();
  torch::Tensor s;  // [w, size g], slot-major
  const int64_t example = written ? written->example_at(begin, end) : -1;
  if (written) {
    const auto& all = written->in_place ? written->written_by_before : written->written_by_all;
    s = narrow_view(all, 0, example, w).view({w, size_ * g});
  } else {
    s = torch::matmul(rows(queries).slice(0, begin, end), columns(passages, 0, size_).t()).mul_(inv_tau);
    false_negatives(queries, passages, begin, end, 0, size_).apply(s);
  }
  auto out = narrow_view(narrow_view(tree_, 0, leaves, leaves), 1, begin, w);  // [leaves, w]
  const int64_t full_columns = full_blocks * b * g;
  if (full_blocks > 0) {
    logsumexp_into(narrow_view(s, 1, 0, full_columns).view({w, full_blocks, b * g}), {2},
                   narrow_view(out, 0, 0, full_blocks).t(), logsumexp_scratch_);
  }
  if (rest > 0) {
    logsumexp_into(narrow_view(s, 1, full_columns, s.size(1) - full_columns), {1}, out.select(0, full_blocks),
                   logsumexp_scratch_);
  }
  if (written && written->in_place) {
    // The written blocks' leaves, read above from the slots' old rows: from
    // the written rows against themselves instead, the values the assembled
    // rows would hold there, in the same order.
    const auto by_written = narrow_view(written->written_by_written, 0, example, w);
    for (const auto& run : written->runs) {
      for (int64_t slot = run.first_slot; slot < run.first_slot + run.count; slot += b) {
        logsumexp_into(narrow_view(by_written, 1, run.first_example + slot - run.first_slot, b), {1, 2},
                       out.select(0, slot / b), logsumexp_scratch_);
      }
    }
  }
  const int64_t used = full_blocks + (rest > 0 ? 1 : 0);
  if (used < leaves) narrow_view(out, 0, used, leaves - used).fill_(-std::numeric_limits<double>::infinity());
  refresh_parents(0, leaves - 1, begin, end);
}

torch::Tensor BankScoreCache::empty_tree(int64_t capacity, const torch::TensorOptions& options) const {
  const int64_t blocks = (capacity + options_.block_slots() - 1) / options_.block_slots();
  int64_t leaves = 1;
  while (leaves < blocks) leaves *= 2;
  return torch::full({2 * leaves, capacity}, -std::numeric_limits<double>::infinity(), options);
}

void BankScoreCache::update(const MemoryBank& queries, const MemoryBank& passages, int64_t first_slot, int64_t count) {
  update(queries, passages, first_slot, count, InfoNCEBankScores());
}

void BankScoreCache::update(const MemoryBank& queries, const MemoryBank& passages, int64_t first_slot, int64_t count,
                            const InfoNCEBankScores& scores) {
  check_banks(queries, passages);
  const int64_t capacity = queries.capacity();
  TORCH_CHECK(count >= 0, "BankScoreCache::update: count must be >= 0, got ", count);
  TORCH_CHECK(capacity == 0 || (first_slot >= 0 && first_slot < capacity),
              "BankScoreCache::update: first_slot must be in [0, ", capacity, "), got ", first_slot);
  if (capacity == 0 || count == 0) return;
  const InternalMode internal;
  const int64_t b = options_.block_slots(), size_before = size_;
  const auto reference = compute_options(queries.view());
  if (!tree_.defined() || tree_.size(1) != capacity || tree_.dtype() != reference.dtype() ||
      tree_.device() != reference.device()) {
    tree_ = empty_tree(capacity, reference);
    if (first_slot != 0 || count < queries.size()) {
      // Rows written before this cache existed: start from scratch.
      rebuild(queries, passages);
      return;
    }
  }
  size_ = queries.size();
  // The loss's scores serve when they describe exactly this write.
  const bool reuse = scores_fit(scores, queries, passages, first_slot, count, size_before);
  if (reuse) assemble_written(scores, passages.entries_per_row(), first_slot, count, size_before);
  const WrittenScores* written = reuse ? &written_ : nullptr;
  count = std::min(count, capacity);
  // The written slots: [first_slot, first_slot + count), wrapping once.
  std::vector<std::pair<int64_t, int64_t>> ranges{{first_slot, std::min(capacity, first_slot + count)}};
  if (first_slot + count > capacity) ranges.emplace_back(0, first_slot + count - capacity);
  for (const auto& [begin, end] : ranges) {
    recompute_blocks(queries, passages, begin / b, (end - 1) / b, written);
    recompute_rows(queries, passages, begin, end, written);
    recompute_targets(queries, passages, begin, end);
  }
  // The loss's tensors are not held past the update that read them.
  written_.before_by_written = written_.written_by_written = written_.written_by_before = torch::Tensor();
}

int64_t BankScoreCache::WrittenScores::example_at(int64_t begin, int64_t end) const {
  for (const auto& run : runs) {
    if (begin >= run.first_slot && end <= run.first_slot + run.count) return run.first_example + begin - run.first_slot;
  }
  return -1;
}

bool BankScoreCache::scores_fit(const InfoNCEBankScores& scores, const MemoryBank& queries, const MemoryBank& passages,
                                int64_t first_slot, int64_t count, int64_t size_before) const {
  if (!scores.defined() || !scores.current_by_bank.defined() || !scores.bank_by_current.defined()) return false;
  const int64_t n = count, capacity = queries.capacity(), group = passages.entries_per_row();
  const auto& current = scores.current_by_current;
  if (n > capacity || current.dim() != 2 || current.size(0) != n || current.size(1) % std::max<int64_t>(1, n) != 0)
    return false;
  const int64_t g = current.size(1) / n;
  // The bank keeps the first `group` vectors of each enqueued group. The
  // scores are read where they lie: all three in the tree's type and place.
  if (group > g) return false;
  for (const auto* t : {&current, &scores.current_by_bank, &scores.bank_by_current}) {
    if (t->scalar_type() != tree_.scalar_type() || t->device() != tree_.device()) return false;
  }
  // The loss saw the banks as this cache last did, and the write appended
  // (or, once full, wrapped) right after them.
  const bool shapes = scores.current_by_bank.dim() == 2 && scores.current_by_bank.size(0) == n &&
                      scores.current_by_bank.size(1) == size_before * group && scores.bank_by_current.dim() == 2 &&
                      scores.bank_by_current.size(0) == size_before && scores.bank_by_current.size(1) == n * g;
  const bool place =
      (size_before == capacity || first_slot == size_before) && queries.size() == std::min(capacity, size_before + n);
  return shapes && place;
}

void BankScoreCache::assemble_written(const InfoNCEBankScores& scores, int64_t group, int64_t first_slot, int64_t count,
                                      int64_t size_before) {
  const int64_t n = count, capacity = tree_.size(1), g = scores.current_by_current.size(1) / n;
  const auto current = narrow_view(scores.current_by_current.view({n, n, g}), 2, 0, group);
  auto& w = written_;
  w.runs = {{first_slot, 0, std::min(capacity, first_slot + n) - first_slot}};
  if (first_slot + n > capacity) w.runs.push_back({0, capacity - first_slot, first_slot + n - capacity});
  // Every row against the written columns is read from the loss's tensors
  // where they lie; so are the written rows against every slot when each
  // of their leaves is one run of the loss's rows (in_place), else they
  // are assembled in a reused buffer [n, size, group].
  w.before_by_written =
      size_before > 0 ? narrow_view(scores.bank_by_current.view({size_before, n, g}), 2, 0, group) : torch::Tensor();
  w.written_by_written = current;
  const int64_t b = options_.block_slots();
  w.written_by_before = size_before > 0 ? scores.current_by_bank.view({n, size_before, group}) : torch::Tensor();
  w.in_place = size_before == size_ && size_ % b == 0 && first_slot % b == 0 && n % b == 0 && group == g &&
               w.written_by_before.defined() && w.written_by_before.is_contiguous() && current.is_contiguous();
  if (w.in_place) {
    w.written_by_all = torch::Tensor();
    return;
  }
  const int64_t numel = n * size_ * group;
  const auto options = scores.current_by_current.options();
  if (!w.rows_buffer.defined() || w.rows_buffer.numel() < numel) w.rows_buffer = torch::empty({numel}, options);
  auto rows = narrow_view(w.rows_buffer, 0, 0, numel).view({n, size_, group});
  if (size_before > 0) narrow_view(rows, 1, 0, size_before).copy_(scores.current_by_bank.view({n, size_before, group}));
  for (const auto& run : w.runs) {
    narrow_view(rows, 1, run.first_slot, run.count).copy_(narrow_view(current, 1, run.first_example, run.count));
  }
  w.written_by_all = rows;
}

void BankScoreCache::recompute_targets(const MemoryBank& queries, const MemoryBank& passages, int64_t begin,
                                       int64_t end) {
  if (normalizes() || end <= begin) return;  // the loss scores normalised copies: it computes them
  const auto like = compute_options(queries.view());
  if (!target_dots_.defined() || target_dots_.size(0) != queries.capacity() ||
      target_dots_.scalar_type() != like.dtype().toScalarType() || target_dots_.device() != like.device()) {
    target_dots_ = torch::zeros({queries.capacity()}, like);
  }
  // What the loss would compute from these rows, one row at a time as well
  // as all at once (`banked_target_dots`).
  narrow_view(target_dots_, 0, begin, end - begin)
      .copy_(banked_target_dots(narrow_view(queries.view().select(1, 0), 0, begin, end - begin),
                                narrow_view(passages.view().select(1, 0), 0, begin, end - begin),
                                like.dtype().toScalarType()));
}

void BankScoreCache::rebuild(const MemoryBank& queries, const MemoryBank& passages) {
  check_banks(queries, passages);
  const InternalMode internal;
  clear();
  if (queries.empty()) return;
  const int64_t capacity = queries.capacity();
  tree_ = empty_tree(capacity, compute_options(queries.view()));
  size_ = queries.size();
  // Row chunks bound the temporary score matrix.
  const int64_t chunk =
      std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, size_ * passages.entries_per_row()));
  for (int64_t r = 0; r < size_; r += chunk)
    recompute_rows(queries, passages, r, std::min(size_, r + chunk), /*written=*/nullptr);
  recompute_targets(queries, passages, 0, size_);
  logsumexp_scratch_ = torch::Tensor();  // sized for the rebuild's chunks, not for an update's
}

void BankScoreCache::clear() {
  const InternalMode internal;
  size_ = 0;
  if (tree_.defined()) tree_.fill_(-std::numeric_limits<double>::infinity());
}

void BankScoreCache::save(torch::serialize::OutputArchive& archive) const {
  archive.write("block_slots", torch::tensor(options_.block_slots(), torch::kLong));
  // The log-sum-exps hold the temperature and similarity they were taken at.
  archive.write("loss", fingerprint_tensor(option_fingerprint(options_.loss(), InfoNCEOptions::fields())));
  archive.write("size", torch::tensor(size_, torch::kLong));
  if (tree_.defined()) archive.write("tree", tree_.cpu());
}

void BankScoreCache::load(torch::serialize::InputArchive& archive, const MemoryBank& queries,
                          const MemoryBank& passages) {
  check_banks(queries, passages);
  const InternalMode internal;
  torch::Tensor block_slots, size, tree, loss;
  if (archive.try_read("loss", loss)) {
    check_same_fingerprint(fingerprint_from_tensor(loss), option_fingerprint(options_.loss(), InfoNCEOptions::fields()),
                           "BankScoreCache::load");
  }
  archive.read("block_slots", block_slots);
  archive.read("size", size);
  TORCH_CHECK(block_slots.numel() == 1 && block_slots.item<int64_t>() == options_.block_slots(),
              "BankScoreCache::load: saved block_slots ", block_slots, " != ", options_.block_slots());
  TORCH_CHECK(size.numel() == 1 && size.item<int64_t>() == queries.size(), "BankScoreCache::load: saved size ", size,
              " != the banks' size ", queries.size());
  clear();
  if (!archive.try_read("tree", tree)) {
    TORCH_CHECK(queries.empty(), "BankScoreCache::load: no saved tree for ", queries.size(), " banked rows");
    tree_ = torch::Tensor();
    return;
  }
  const auto like = queries.empty() ? tree.options() : compute_options(queries.view());
  const auto expected = empty_tree(queries.capacity(), like);
  TORCH_CHECK(tree.sizes() == expected.sizes() && tree.scalar_type() == expected.scalar_type(),
              "BankScoreCache::load: saved tree ", tree.sizes(), " ", tree.scalar_type(), " does not fit banks of ",
              queries.capacity(), " rows (expected ", expected.sizes(), " ", expected.scalar_type(), ")");
  tree_ = tree.to(like.device());
  size_ = queries.size();
  // Not saved: computed again from the banks, the same numbers.
  recompute_targets(queries, passages, 0, size_);
}

// Copies, as the loss reads them while the next update writes the cache;
// taken through one-call views (the loss asks for both every micro-batch).
torch::Tensor BankScoreCache::row_target_dot() const {
  if (size_ == 0 || normalizes() || !target_dots_.defined()) return {};
  return narrow_view(target_dots_, 0, 0, size_).clone();
}

torch::Tensor BankScoreCache::row_logsumexp() const {
  if (size_ == 0) return {};
  // The roots: node 1 of every row's tree.
  return tree_.as_strided({size_}, {tree_.stride(1)}, tree_.storage_offset() + tree_.stride(0)).clone();
}

}  // namespace contaccum
