#include "contaccum/data/collator.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace contaccum {

const OptionTable<CollatorOptions>& CollatorOptions::fields() {
  using O = CollatorOptions;
  static const OptionTable<O> table = {
      option_field<O>("query_max_length", "token limit of a query (special tokens included)",
                      CONTACCUM_OPTION_ACCESSORS(query_max_length), greater_than(0)),
      option_field<O>("passage_max_length", "token limit of a passage (special tokens included)",
                      CONTACCUM_OPTION_ACCESSORS(passage_max_length), greater_than(0)),
      option_field<O>("pin_memory", "collate into pinned memory (on by itself for a CUDA device)",
                      CONTACCUM_OPTION_ACCESSORS(pin_memory), {}, /*changes_results=*/false),
  };
  return table;
}

Collator::Collator(TextEncoderFn encode, CollatorOptions options) : encode_(std::move(encode)), options_(options) {
  TORCH_CHECK(encode_ != nullptr, "Collator: encode must be set");
  check_option_fields(options_, CollatorOptions::fields(), "CollatorOptions");
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
  // Identities for masking false negatives: the passages', and every
  // relevant passage of each query (-1 padding).
  batch.passage_ids = torch::empty({static_cast<int64_t>(indices.passages.size())}, torch::kLong);
  auto* ids = batch.passage_ids.data_ptr<int64_t>();
  for (size_t i = 0; i < indices.passages.size(); ++i) ids[i] = set.passage_identity(indices.passages[i]);
  std::vector<std::vector<int64_t>> relevant;
  size_t most = 1;
  for (const auto example : indices.examples) {
    std::vector<int64_t> identities;
    for (const auto row : set.relevant(example)) {
      const int64_t identity = set.passage_identity(row);
      if (std::find(identities.begin(), identities.end(), identity) == identities.end()) identities.push_back(identity);
    }
    most = std::max(most, identities.size());
    relevant.push_back(std::move(identities));
  }
  // (Hand-made indices without examples: each query's positive, the default.)
  if (relevant.size() == indices.queries.size()) {
    batch.positive_ids =
        torch::full({static_cast<int64_t>(relevant.size()), static_cast<int64_t>(most)}, -1, torch::kLong);
    auto* positives = batch.positive_ids.data_ptr<int64_t>();
    for (size_t i = 0; i < relevant.size(); ++i)
      std::copy(relevant[i].begin(), relevant[i].end(), positives + i * most);
  }
  if (options_.pin_memory()) {
    batch.queries = batch.queries.pin_memory();
    batch.passages = batch.passages.pin_memory();
  }
  return batch;
}

}  // namespace contaccum
