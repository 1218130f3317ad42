#include "staleness_sample.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <string>

namespace contaccum {
namespace detail {
namespace {

EncoderInput copy_rows(const EncoderInput& in, int64_t begin, int64_t end) {
  const auto rows = in.slice(begin, end);
  EncoderInput out;
  out.input_ids = rows.input_ids.clone();
  if (rows.attention_mask.defined()) out.attention_mask = rows.attention_mask.clone();
  for (const auto& [name, t] : rows.extras) out.extras[name] = t.clone();
  return out;
}

void save_input(torch::serialize::OutputArchive& archive, const EncoderInput& in) {
  archive.write("input_ids", in.input_ids.cpu());
  if (in.attention_mask.defined()) archive.write("attention_mask", in.attention_mask.cpu());
  for (const auto& [name, t] : in.extras) archive.write("extra." + name, t.cpu());
}

EncoderInput load_input(torch::serialize::InputArchive& archive) {
  EncoderInput in;
  for (const auto& key : archive.keys()) {
    torch::Tensor t;
    archive.read(key, t);
    if (key == "input_ids") {
      in.input_ids = t;
    } else if (key == "attention_mask") {
      in.attention_mask = t;
    } else if (key.rfind("extra.", 0) == 0) {
      in.extras[key.substr(6)] = t;
    }
  }
  TORCH_CHECK(in.input_ids.defined(), "StalenessSample::load: a kept input has no input_ids");
  return in;
}

}  // namespace

StalenessSample::StalenessSample(int64_t size, int64_t capacity) : capacity_(capacity) {
  TORCH_CHECK(size >= 0, "StalenessSample: size must be >= 0, got ", size);
  const int64_t n = std::min(size, capacity);
  for (int64_t i = 0; i < n; ++i) slots_.push_back(i * capacity / n);
  entries_.resize(slots_.size());
}

int64_t StalenessSample::index_of(int64_t slot) const {
  const auto it = std::lower_bound(slots_.begin(), slots_.end(), slot);
  return it != slots_.end() && *it == slot ? static_cast<int64_t>(it - slots_.begin()) : -1;
}

void StalenessSample::record(int64_t index, const TrainingBatch& batch, int64_t row) {
  const int64_t g = batch.passages_per_example();
  entries_.at(static_cast<size_t>(index)) =
      Entry{copy_rows(batch.queries, row, row + 1), copy_rows(batch.passages, row * g, (row + 1) * g)};
}

void StalenessSample::save(torch::serialize::OutputArchive& archive) const {
  archive.write("capacity", torch::tensor(capacity_, torch::kLong));
  archive.write("size", torch::tensor(size(), torch::kLong));
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!entries_[i]) continue;
    torch::serialize::OutputArchive entry, query, passages;
    save_input(query, entries_[i]->query);
    save_input(passages, entries_[i]->passages);
    entry.write("query", query);
    entry.write("passages", passages);
    archive.write("e" + std::to_string(i), entry);
  }
}

bool StalenessSample::load(torch::serialize::InputArchive& archive) {
  torch::Tensor capacity, size;
  archive.read("capacity", capacity);
  archive.read("size", size);
  for (auto& e : entries_) e.reset();
  if (capacity.item<int64_t>() != capacity_ || size.item<int64_t>() != this->size()) return false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    torch::serialize::InputArchive entry, query, passages;
    if (!archive.try_read("e" + std::to_string(i), entry)) continue;
    entry.read("query", query);
    entry.read("passages", passages);
    entries_[i] = Entry{load_input(query), load_input(passages)};
  }
  return true;
}

}  // namespace detail
}  // namespace contaccum
