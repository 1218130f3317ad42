#include "contaccum/data/training_batch.h"

#include <c10/util/Exception.h>

namespace contaccum {

int64_t TrainingBatch::size() const {
  TORCH_CHECK(hard_negatives >= 0, "TrainingBatch::hard_negatives must be >= 0, got ", hard_negatives);
  const int64_t n = queries.size();
  TORCH_CHECK(passages.size() == n * passages_per_example(), "TrainingBatch: ", n,
              " queries with hard_negatives = ", hard_negatives, " need ", n * passages_per_example(),
              " passages, got ", passages.size());
  return n;
}

TrainingBatch TrainingBatch::slice(int64_t begin, int64_t end) const {
  size();
  TrainingBatch out;
  out.queries = queries.slice(begin, end);
  out.passages = passages.slice(begin * passages_per_example(), end * passages_per_example());
  out.hard_negatives = hard_negatives;
  return out;
}

}  // namespace contaccum
