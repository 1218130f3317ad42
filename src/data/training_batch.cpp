#include "contaccum/data/training_batch.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

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
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL, kFnvPrime = 0x100000001b3ULL;

// FNV-1a's step over the eight bytes of one token id, lowest first.
inline uint64_t fnv_token(uint64_t h, uint64_t v) {
  for (int byte = 0; byte < 8; ++byte, v >>= 8) h = (h ^ (v & 0xff)) * kFnvPrime;
  return h;
}

// FNV-1a over a row's attended token ids, top bit cleared (identities are
// non-negative; -1 means none). A row's hash is one chain of dependent
// multiplications, eight a token; the rows are hashed four at a time, their
// chains interleaved token by token, so that the multiplier works on four
// at once instead of waiting on one (the same values as row by row).
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
  constexpr int64_t kLanes = 4;
  for (int64_t r0 = 0; r0 < rows; r0 += kLanes) {
    const int64_t lanes = std::min(kLanes, rows - r0);
    uint64_t h[kLanes] = {kFnvBasis, kFnvBasis, kFnvBasis, kFnvBasis};
    for (int64_t t = 0; t < length; ++t) {
      for (int64_t k = 0; k < lanes; ++k) {
        const int64_t at = (r0 + k) * length + t;
        if (!m || m[at] != 0) h[k] = fnv_token(h[k], static_cast<uint64_t>(id[at]));
      }
    }
    for (int64_t k = 0; k < lanes; ++k) hashes[r0 + k] = static_cast<int64_t>(h[k] & 0x7fffffffffffffffULL);
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
  return positive_identities(positive_ids.defined() ? torch::Tensor() : passage_identities());
}

torch::Tensor TrainingBatch::positive_identities(const torch::Tensor& passage_identities) const {
  const int64_t n = size();
  if (positive_ids.defined()) {
    TORCH_CHECK(positive_ids.scalar_type() == torch::kLong && positive_ids.dim() == 2 && positive_ids.size(0) == n,
                "TrainingBatch::positive_ids must be [", n, ", P] int64, got ", positive_ids.sizes(), " ",
                positive_ids.scalar_type());
    return positive_ids.to(torch::kCPU);
  }
  TORCH_CHECK(passage_identities.defined() && passage_identities.dim() == 2 && passage_identities.size(0) == n &&
                  passage_identities.size(1) == passages_per_example(),
              "TrainingBatch::positive_identities: passage_identities must be [", n, ", ", passages_per_example(),
              "], got ", passage_identities.defined() ? passage_identities.sizes() : at::IntArrayRef{});
  return passage_identities.narrow(1, 0, 1).contiguous();
}

}  // namespace contaccum
