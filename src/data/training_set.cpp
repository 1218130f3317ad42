#include "contaccum/data/training_set.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <functional>
#include <string_view>

namespace contaccum {

TrainingSet::TrainingSet(std::shared_ptr<const TextTable> queries, std::shared_ptr<const TextTable> passages)
    : queries_(std::move(queries)), passages_(std::move(passages)) {
  TORCH_CHECK(queries_ && passages_, "TrainingSet: query and passage tables must not be null");
  // Identical texts are one passage: the first row of each text, found by a
  // hash of the text and confirmed by comparing it.
  const int64_t n = passages_->size();
  identity_.resize(static_cast<size_t>(n));
  std::unordered_multimap<size_t, int64_t> first_of;
  first_of.reserve(static_cast<size_t>(n));
  const std::hash<std::string_view> hash;
  for (int64_t row = 0; row < n; ++row) {
    const auto title = passages_->title(row), text = passages_->text(row);
    const size_t h = hash(text) ^ (hash(title) * 0x9e3779b97f4a7c15ULL);
    int64_t identity = row;
    for (auto [it, end] = first_of.equal_range(h); it != end; ++it) {
      if (passages_->text(it->second) == text && passages_->title(it->second) == title) {
        identity = it->second;
        break;
      }
    }
    if (identity == row) first_of.emplace(h, row);
    identity_[static_cast<size_t>(row)] = identity;
  }
}

void TrainingSet::add_relevant(int64_t query, c10::ArrayRef<int64_t> passages) {
  TORCH_CHECK(query >= 0 && query < queries_->size(), "TrainingSet::add_relevant: query row ", query,
              " is outside the query table [0, ", queries_->size(), ")");
  check(passages, "relevant");
  auto& list = relevant_[query];
  list.insert(list.end(), passages.begin(), passages.end());
}

std::vector<int64_t> TrainingSet::relevant(int64_t i) const {
  const auto positives = this->positives(i);
  std::vector<int64_t> once(positives.begin(), positives.end());
  if (const auto it = relevant_.find(query(i)); it != relevant_.end()) {
    for (const auto row : it->second) {
      if (std::find(once.begin(), once.end(), row) == once.end()) once.push_back(row);
    }
  }
  return once;
}

c10::ArrayRef<int64_t> TrainingSet::list(const Lists& l, int64_t i) {
  TORCH_CHECK(i >= 0 && i + 1 < static_cast<int64_t>(l.offsets.size()), "TrainingSet: example ", i,
              " out of range [0, ", l.offsets.size() - 1, ")");
  const auto begin = l.offsets[static_cast<size_t>(i)], end = l.offsets[static_cast<size_t>(i) + 1];
  return c10::ArrayRef<int64_t>(l.rows.data() + begin, static_cast<size_t>(end - begin));
}

void TrainingSet::check(c10::ArrayRef<int64_t> rows, const char* what) const {
  for (const auto r : rows) {
    TORCH_CHECK(r >= 0 && r < passages_->size(), "TrainingSet::add: ", what, " row ", r,
                " is outside the passage table [0, ", passages_->size(), ")");
  }
}

void TrainingSet::append(Lists& l, c10::ArrayRef<int64_t> rows) {
  l.rows.insert(l.rows.end(), rows.begin(), rows.end());
  l.offsets.push_back(static_cast<int64_t>(l.rows.size()));
}

void TrainingSet::add(int64_t query, c10::ArrayRef<int64_t> positives, c10::ArrayRef<int64_t> hard_negatives,
                      c10::ArrayRef<int64_t> other_negatives) {
  TORCH_CHECK(query >= 0 && query < queries_->size(), "TrainingSet::add: query row ", query,
              " is outside the query table [0, ", queries_->size(), ")");
  TORCH_CHECK(!positives.empty(), "TrainingSet::add: an example needs at least one positive");
  // Check everything before appending anything: a failed add leaves the
  // set unchanged.
  check(positives, "positive");
  check(hard_negatives, "hard negative");
  check(other_negatives, "other negative");
  // A query's second example on: every example of it sees the others'
  // positives as relevant (one integer per query row otherwise).
  if (first_example_.empty()) first_example_.assign(static_cast<size_t>(queries_->size()), -1);
  auto& first = first_example_[static_cast<size_t>(query)];
  if (first >= 0) {
    auto& list = relevant_[query];
    if (list.empty()) {
      const auto earlier = this->positives(first);
      list.assign(earlier.begin(), earlier.end());
    }
    list.insert(list.end(), positives.begin(), positives.end());
  } else {
    first = size();
  }
  append(positives_, positives);
  append(hard_, hard_negatives);
  append(other_, other_negatives);
  queries_of_.push_back(query);
}

}  // namespace contaccum
