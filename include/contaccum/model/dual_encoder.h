#pragma once

#include "contaccum/core/similarity.h"
#include "contaccum/encoders/encoder.h"

#include <torch/arg.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <vector>

namespace contaccum {

/// Options of `DualEncoder`.
struct DualEncoderOptions {
  /// How the model scores a query against a passage, the one setting of it:
  /// with `Cosine` every representation the towers return is L2-normalised
  /// (so inner products are cosines), and the loss (`Strategy`), the bank
  /// score cache, evaluation, embeddings and indexes all read it from the
  /// model. Default: `Similarity::Dot` (DPR's raw inner products).
  TORCH_ARG(Similarity, similarity) = Similarity::Dot;

 public:
  /// `similarity(on ? Cosine : Dot)`: the earlier spelling.
  DualEncoderOptions& normalize(bool on) {
    similarity_ = on ? Similarity::Cosine : Similarity::Dot;
    return *this;
  }
  /// Whether representations are L2-normalised (`similarity` is `Cosine`).
  bool normalize() const { return similarity_ == Similarity::Cosine; }
};

/// A dual encoder: a query tower and a passage tower, or one tower shared by
/// both. Any `EncoderModule` can serve as a tower.
///
/// Example:
/// ```
/// auto q = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(vocab, 128));
/// auto p = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(vocab, 128));
/// DualEncoder model(q.ptr(), p.ptr());   // two towers
/// DualEncoder shared(q.ptr());            // one shared tower
/// ```
class DualEncoderImpl : public torch::nn::Module {
 public:
  /// Two towers. Both must produce the same `output_dim()`.
  DualEncoderImpl(std::shared_ptr<EncoderModule> query_encoder, std::shared_ptr<EncoderModule> passage_encoder,
                  DualEncoderOptions options = {});
  /// One tower shared by queries and passages.
  explicit DualEncoderImpl(std::shared_ptr<EncoderModule> shared_encoder, DualEncoderOptions options = {});

  /// Query representations `[queries.size(), dim()]`; inputs follow the
  /// model's device.
  torch::Tensor encode_queries(const EncoderInput& queries);
  /// Passage representations `[passages.size(), dim()]`.
  torch::Tensor encode_passages(const EncoderInput& passages);

  /// Width of the representations.
  int64_t dim() const { return query_encoder_->output_dim(); }
  /// True when one tower serves both sides.
  bool shared() const { return query_encoder_ == passage_encoder_; }
  /// The device of the model's first parameter (CPU when it has none).
  torch::Device device() const;

  /// Parameters of the query tower (all of them when shared).
  std::vector<torch::Tensor> query_parameters() const { return query_encoder_->parameters(); }
  /// Parameters of the passage tower (all of them when shared).
  std::vector<torch::Tensor> passage_parameters() const { return passage_encoder_->parameters(); }

  const std::shared_ptr<EncoderModule>& query_encoder() const { return query_encoder_; }
  const std::shared_ptr<EncoderModule>& passage_encoder() const { return passage_encoder_; }
  const DualEncoderOptions& options() const { return options_; }

 private:
  torch::Tensor finish(torch::Tensor reps, int64_t rows, const char* side) const;

  DualEncoderOptions options_;
  std::shared_ptr<EncoderModule> query_encoder_;
  std::shared_ptr<EncoderModule> passage_encoder_;
};

/// Module holder of `DualEncoderImpl`.
TORCH_MODULE(DualEncoder);

/// CRC-32 of every parameter and buffer of `module` (names, shapes and
/// bytes, in order): which weights produced a set of embeddings or an index
/// (recorded in their info.json, compared when they are used with a model).
uint32_t weights_crc32(const torch::nn::Module& module);

}  // namespace contaccum
