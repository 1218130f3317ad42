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
  if (passage_ids.defined()) {
    out.passage_ids = passage_ids.slice(0, begin * passages_per_example(), end * passages_per_example());
  }
  if (positive_ids.defined()) out.positive_ids = positive_ids.slice(0, begin, end);
  return out;
}

namespace {
// FNV-1a over a row's attended token ids, top bit cleared (identities are
// non-negative; -1 means none).
torch::Tensor token_hashes(const EncoderInput& input) {
  const auto ids = input.input_ids.to(torch::kCPU, torch::kLong).contiguous();
  torch::Tensor mask;
  if (input.attention_mask.defined()) mask = input.attention_mask.to(torch::kCPU, torch::kLong).contiguous();
  TORCH_CHECK(!mask.defined() || mask.sizes() == ids.sizes(), "TrainingBatch: attention_mask ", mask.sizes(),
              " must have the shape of input_ids ", ids.sizes());
  const int64_t rows = ids.size(0), length = ids.dim() > 1 ? ids.size(1) : 1;
  auto out = torch::empty({rows}, torch::kLong);
  int64_t* hashes = out.data_ptr<int64_t>();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* m = mask.defined() ? mask.data_ptr<int64_t>() : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t t = 0; t < length; ++t) {
      if (m && m[r * length + t] == 0) continue;
      auto v = static_cast<uint64_t>(id[r * length + t]);
      for (int byte = 0; byte < 8; ++byte, v >>= 8) h = (h ^ (v & 0xff)) * 0x100000001b3ULL;
    }
    hashes[r] = static_cast<int64_t>(h & 0x7fffffffffffffffULL);
  }
  return out;
}
}  // namespace

torch::Tensor TrainingBatch::passage_identities() const {
  const int64_t n = size(), g = passages_per_example();
  if (passage_ids.defined()) {
    TORCH_CHECK(passage_ids.scalar_type() == torch::kLong && passage_ids.numel() == n * g,
                "TrainingBatch::passage_ids must be ", n * g, " int64 identities (one per passage row), got ",
                passage_ids.sizes(), " ", passage_ids.scalar_type());
    return passage_ids.to(torch::kCPU).reshape({n, g});
  }
  TORCH_CHECK(passages.input_ids.defined(),
              "TrainingBatch: passages have no input_ids to hash into identities; set passage_ids");
  return token_hashes(passages).view({n, g});
}

torch::Tensor TrainingBatch::positive_identities() const {
  const int64_t n = size();
  if (positive_ids.defined()) {
    TORCH_CHECK(positive_ids.scalar_type() == torch::kLong && positive_ids.dim() == 2 && positive_ids.size(0) == n,
                "TrainingBatch::positive_ids must be [", n, ", P] int64, got ", positive_ids.sizes(), " ",
                positive_ids.scalar_type());
    return positive_ids.to(torch::kCPU);
  }
  return passage_identities().narrow(1, 0, 1).contiguous();
}

}  // namespace contaccum
