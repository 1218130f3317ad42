// Strategy::measure_staleness: the banked examples of the staleness sample
// re-encoded with the current towers and compared with what the banks hold.
#include "contaccum/core/stopwatch.h"
#include "contaccum/core/unit_rows.h"
#include "contaccum/strategy/strategy.h"

#include "staleness_sample.h"

#include <torch/utils.h>

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <utility>

namespace contaccum {
namespace {

using Entry = detail::StalenessSample::Entry;

// Rows of inputs that can be stacked share every tensor's trailing shape.
std::vector<std::vector<int64_t>> shape_key(const EncoderInput& in) {
  std::vector<std::vector<int64_t>> key;
  const auto add = [&key](const torch::Tensor& t) {
    key.emplace_back(t.defined() ? t.sizes().slice(1).vec() : std::vector<int64_t>{-1});
  };
  add(in.input_ids);
  add(in.attention_mask);
  for (const auto& [name, t] : in.extras) add(t);
  return key;
}

EncoderInput stack(const std::vector<const EncoderInput*>& parts) {
  const auto cat = [&parts](auto get) {
    std::vector<torch::Tensor> ts;
    for (const auto* p : parts) ts.push_back(get(*p));
    return ts.front().defined() ? torch::cat(ts) : torch::Tensor();
  };
  EncoderInput out;
  out.input_ids = cat([](const EncoderInput& e) { return e.input_ids; });
  out.attention_mask = cat([](const EncoderInput& e) { return e.attention_mask; });
  for (const auto& [name, t] : parts.front()->extras) {
    out.extras[name] = cat([&name = name](const EncoderInput& e) { return e.extras.at(name); });
  }
  return out;
}

// Encodes `inputs[i]` for every i, stacking inputs of one shape into chunks
// of at most `chunk` rows; returns one tensor per input.
template <class EncodeFn>
std::vector<torch::Tensor> encode_each(const std::vector<const EncoderInput*>& inputs, int64_t chunk, EncodeFn encode) {
  std::map<std::vector<std::vector<int64_t>>, std::vector<size_t>> by_shape;
  for (size_t i = 0; i < inputs.size(); ++i) by_shape[shape_key(*inputs[i])].push_back(i);
  std::vector<torch::Tensor> out(inputs.size());
  for (const auto& [key, members] : by_shape) {
    for (size_t b = 0; b < members.size();) {
      std::vector<const EncoderInput*> parts;
      std::vector<size_t> which;
      int64_t rows = 0;
      while (b < members.size() && (parts.empty() || rows + inputs[members[b]]->size() <= chunk)) {
        parts.push_back(inputs[members[b]]);
        which.push_back(members[b]);
        rows += inputs[members[b]]->size();
        ++b;
      }
      const auto reps = encode(stack(parts));
      int64_t at = 0;
      for (size_t k = 0; k < parts.size(); ++k) {
        out[which[k]] = reps.slice(0, at, at + parts[k]->size());
        at += parts[k]->size();
      }
    }
  }
  return out;
}

// Ages 0, 1, 2-3, 4-7, ...: bucket 0 holds age 0, bucket b >= 1 ages
// [2^(b-1), 2^b - 1].
int bucket_of(int64_t age) {
  int b = 0;
  while (age > 0) {
    age >>= 1;
    ++b;
  }
  return b;
}

class SideStats {
 public:
  void add(int64_t age, double cosine) {
    add_to(all_, age, cosine);
    add_to(buckets_[bucket_of(age)], age, cosine);
  }
  BankSideStaleness finish() const {
    BankSideStaleness out;
    out.all = finish_one(all_);
    for (const auto& [b, acc] : buckets_) {
      auto s = finish_one(acc);
      s.min_age = b == 0 ? 0 : int64_t{1} << (b - 1);
      s.max_age = b == 0 ? 0 : (int64_t{1} << b) - 1;
      out.by_age.push_back(s);
    }
    return out;
  }

 private:
  struct Acc {
    int64_t rows = 0, min_age = std::numeric_limits<int64_t>::max(), max_age = 0;
    double sum = 0.0, min = 2.0;
  };
  static void add_to(Acc& a, int64_t age, double cosine) {
    a.rows += 1;
    a.sum += cosine;
    a.min = std::min(a.min, cosine);
    a.min_age = std::min(a.min_age, age);
    a.max_age = std::max(a.max_age, age);
  }
  static StalenessStats finish_one(const Acc& a) {
    StalenessStats s;
    s.rows = a.rows;
    if (a.rows == 0) return s;
    s.min_age = a.min_age;
    s.max_age = a.max_age;
    s.mean_cosine = a.sum / static_cast<double>(a.rows);
    s.min_cosine = a.min;
    return s;
  }
  Acc all_;
  std::map<int, Acc> buckets_;
};

// Row-wise cosine in float64: exactly 1 for bit-equal rows (sqrt(x * x) == x
// for a double x), clamped to [-1, 1].
torch::Tensor cosines(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  const auto dot = (x * y).sum(-1);
  const auto norms = ((x * x).sum(-1) * (y * y).sum(-1)).sqrt();
  return (dot / norms.clamp_min(std::numeric_limits<double>::min())).clamp(-1.0, 1.0);
}

// Place of each row's own column (the diagonal) in its row of `scores`: the
// number of columns scoring strictly higher.
torch::Tensor diagonal_ranks(const torch::Tensor& scores) { return (scores > scores.diagonal().unsqueeze(1)).sum(1); }

torch::Tensor similarity(const torch::Tensor& q, const torch::Tensor& p, bool cosine) {
  auto x = q.to(torch::kDouble), y = p.to(torch::kDouble);
  if (cosine) {
    x = unit_rows(x);
    y = unit_rows(y);
  }
  return x.matmul(y.t());
}

}  // namespace

BankStaleness Strategy::measure_staleness() {
  TORCH_CHECK(sample_ != nullptr,
              "Strategy::measure_staleness: no staleness sample is kept (set "
              "StrategyOptions::staleness_sample > 0 and memory_size > 0)");
  const Stopwatch watch;
  BankStaleness out;
  // Sampled slots holding a valid bank row whose inputs are known.
  std::vector<int64_t> slots;
  std::vector<const EncoderInput*> queries, passages;
  for (int64_t i = 0; i < sample_->size(); ++i) {
    const auto& entry = sample_->entries()[static_cast<size_t>(i)];
    const int64_t slot = sample_->slots()[static_cast<size_t>(i)];
    if (!entry || slot >= passage_bank_.size()) continue;
    slots.push_back(slot);
    queries.push_back(&entry->query);
    passages.push_back(&entry->passages);
  }
  out.examples = static_cast<int64_t>(slots.size());
  if (slots.empty()) return out;

  const bool was_training = model_->is_training();
  model_->eval();
  std::vector<torch::Tensor> new_q, new_p;
  {
    torch::NoGradGuard no_grad;
    // Under the autocast the banked rows were encoded with.
    const AutocastGuard autocast(model_->device().type(), options_.precision());
    const int64_t chunk = std::max<int64_t>(1, chunk_rows());
    if (!query_bank_.empty()) {
      new_q = encode_each(queries, chunk, [this](const EncoderInput& in) { return model_->encode_queries(in); });
    }
    new_p = encode_each(passages, chunk * passages.front()->size(),
                        [this](const EncoderInput& in) { return model_->encode_passages(in); });
  }
  model_->train(was_training);

  const auto slot_index = torch::tensor(slots, torch::kLong).to(passage_bank_.view().device());
  const int64_t stored = passage_bank_.entries_per_row();               // 1 + h, or 1 without banked hard negatives
  const auto old_p = passage_bank_.view().index_select(0, slot_index);  // [s, stored, d]
  const auto fresh_p = torch::stack(new_p).slice(1, 0, stored);         // [s, stored, d]
  const auto p_cos = cosines(old_p, fresh_p.to(old_p.device())).cpu();  // [s, stored]
  SideStats q_stats, p_stats;
  torch::Tensor q_cos;
  if (!new_q.empty()) {
    const auto old_q = query_bank_.view().index_select(0, slot_index).select(1, 0);
    q_cos = cosines(old_q, torch::cat(new_q).to(old_q.device())).cpu();
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t tag = passage_bank_.tags()[static_cast<size_t>(slots[i])];
    if (tag < 0) continue;  // written before ages were kept
    const int64_t age = steps_ - tag;
    for (int64_t e = 0; e < stored; ++e) p_stats.add(age, p_cos[static_cast<int64_t>(i)][e].item<double>());
    if (q_cos.defined()) q_stats.add(age, q_cos[static_cast<int64_t>(i)].item<double>());
  }
  out.query = q_stats.finish();
  out.passage = p_stats.finish();
  if (q_cos.defined()) {
    const bool cosine = options_.loss().similarity() == Similarity::Cosine;
    const auto old_q = query_bank_.view().index_select(0, slot_index).select(1, 0);
    const auto before = diagonal_ranks(similarity(old_q, old_p.select(1, 0), cosine));
    const auto after = diagonal_ranks(similarity(torch::cat(new_q), fresh_p.select(1, 0), cosine));
    out.ranked = static_cast<int64_t>(slots.size());
    out.rank_changed = (before.cpu() != after.cpu()).to(torch::kDouble).mean().item<double>();
  }
  out.seconds = watch.seconds();
  return out;
}

}  // namespace contaccum
