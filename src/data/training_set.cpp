#include "contaccum/data/training_set.h"

#include <c10/util/Exception.h>

namespace contaccum {

TrainingSet::TrainingSet(std::shared_ptr<const TextTable> queries, std::shared_ptr<const TextTable> passages)
    : queries_(std::move(queries)), passages_(std::move(passages)) {
  TORCH_CHECK(queries_ && passages_, "TrainingSet: query and passage tables must not be null");
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
  append(positives_, positives);
  append(hard_, hard_negatives);
  append(other_, other_negatives);
  queries_of_.push_back(query);
}

}  // namespace contaccum
