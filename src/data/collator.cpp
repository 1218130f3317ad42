#include "contaccum/data/collator.h"

#include <c10/util/Exception.h>

namespace contaccum {

Collator::Collator(TextEncoderFn encode, CollatorOptions options) : encode_(std::move(encode)), options_(options) {
  TORCH_CHECK(encode_ != nullptr, "Collator: encode must be set");
  TORCH_CHECK(options_.query_max_length() > 0, "CollatorOptions::query_max_length must be > 0, got ",
              options_.query_max_length());
  TORCH_CHECK(options_.passage_max_length() > 0, "CollatorOptions::passage_max_length must be > 0, got ",
              options_.passage_max_length());
}

TrainingBatch Collator::operator()(const TrainingSet& set, const BatchIndices& indices) const {
  std::vector<std::string> queries, passages;
  queries.reserve(indices.queries.size());
  passages.reserve(indices.passages.size());
  for (const auto row : indices.queries) queries.emplace_back(set.queries().text(row));
  for (const auto row : indices.passages) passages.push_back(set.passages().full_text(row));
  TrainingBatch batch;
  batch.hard_negatives = indices.hard_negatives;
  batch.queries = encode_(queries, options_.query_max_length());
  batch.passages = encode_(passages, options_.passage_max_length());
  batch.size();  // validates the layout
  return batch;
}

}  // namespace contaccum
