#include "contaccum/encoders/bag_of_embeddings.h"

#include "accumulating_linear.h"
#include "contaccum/core/precision.h"
#include "contaccum/encoders/registry.h"
#include "weighted_bag_sum.h"

#include <torch/nn/functional/dropout.h>

#include <c10/util/StringUtil.h>

namespace contaccum {

BagOfEmbeddingsEncoderImpl::BagOfEmbeddingsEncoderImpl(BagOfEmbeddingsEncoderOptions options)
    : options_(std::move(options)) {
  TORCH_CHECK(options_.vocab_size() > 0, "BagOfEmbeddingsEncoderOptions::vocab_size must be > 0, got ",
              options_.vocab_size());
  TORCH_CHECK(options_.output_dim() > 0, "BagOfEmbeddingsEncoderOptions::output_dim must be > 0, got ",
              options_.output_dim());
  TORCH_CHECK(options_.embedding_dim() > 0, "BagOfEmbeddingsEncoderOptions::embedding_dim must be > 0, got ",
              options_.embedding_dim());
  TORCH_CHECK(options_.dropout() >= 0.0 && options_.dropout() < 1.0,
              "BagOfEmbeddingsEncoderOptions::dropout must be in [0, 1), got ", options_.dropout());
  TORCH_CHECK(options_.padding_idx() >= 0 && options_.padding_idx() < options_.vocab_size(),
              "BagOfEmbeddingsEncoderOptions::padding_idx must be in [0, vocab_size = ", options_.vocab_size(),
              "), got ", options_.padding_idx());
  embedding_ = register_module(
      "embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(options_.vocab_size(), options_.embedding_dim())
                                            .padding_idx(options_.padding_idx())));
  if (options_.pooling() == BagPooling::Attention) {
    token_logit_ = register_module("token_logit", torch::nn::Embedding(options_.vocab_size(), 1));
    torch::NoGradGuard no_grad;
    token_logit_->weight.zero_();
  }
  projection_ = register_module("projection", torch::nn::Linear(options_.embedding_dim(), options_.output_dim()));
}

torch::Tensor BagOfEmbeddingsEncoderImpl::forward(const EncoderInput& input) {
  const auto& ids = input.input_ids;
  TORCH_CHECK(ids.defined() && ids.dim() == 2, "BagOfEmbeddingsEncoder: input_ids must be [batch, seq], got ",
              ids.defined() ? ids.sizes() : torch::IntArrayRef{});
  const auto& weight = embedding_->weight;
  torch::Tensor mask = input.attention_mask.defined() ? input.attention_mask.to(weight.dtype())
                                                      : torch::ones(ids.sizes(), weight.options());
  TORCH_CHECK(mask.sizes() == ids.sizes(), "BagOfEmbeddingsEncoder: attention_mask ", mask.sizes(),
              " must match input_ids ", ids.sizes());
  TORCH_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < options_.vocab_size()),
              "BagOfEmbeddingsEncoder: input_ids must be in [0, vocab_size = ", options_.vocab_size(), ")");
  // The pooling as one weighted embedding-bag sum: no [batch, seq, dim]
  // intermediate, forward or backward. All-padding rows pool to zero.
  torch::Tensor weights;
  if (token_logit_) {
    // Softmax over the real tokens, written out so that masked positions get
    // exactly zero weight and an all-padding row no NaN. Shifting by the
    // (detached) row maximum changes no value and no gradient.
    auto logits = torch::embedding(token_logit_->weight, ids.to(torch::kLong)).squeeze(-1);
    logits = logits.masked_fill(mask <= 0, lowest_finite(logits.scalar_type()));
    const auto shifted = logits - std::get<0>(logits.max(1, /*keepdim=*/true)).detach();
    const auto unnormalised = shifted.exp() * mask;
    weights = (unnormalised / unnormalised.sum(1, /*keepdim=*/true).clamp_min(1e-30)).reshape({-1});
  } else {
    weights = (mask / mask.sum(1, /*keepdim=*/true).clamp_min(1.0)).reshape({-1});
  }
  // The backward adds into the table's `.grad` directly (weighted_bag_sum.h):
  // no table-sized temporary per micro-batch, which for an embedding table
  // of millions of rows is most of what a step would allocate.
  auto pooled = detail::weighted_bag_sum(weight, ids.to(torch::kLong), weights, options_.padding_idx());
  pooled = torch::nn::functional::dropout(
      pooled, torch::nn::functional::DropoutFuncOptions().p(options_.dropout()).training(is_training()));
  // Likewise the projection's weight and bias (accumulating_linear.h).
  return detail::accumulating_linear(pooled, projection_->weight, projection_->bias);
}

EncoderRegistration bag_of_embeddings_registration() {
  EncoderRegistration r;
  r.name = "bag_of_embeddings";
  r.options = {
      {"dim", int64_t{256}, "output width (default 256)", positive_integer()},
      {"embedding_dim", int64_t{256}, "token embedding width (default 256)", positive_integer()},
      {"dropout", 0.1, "dropout on the pooled embedding (default 0.1)", fraction_below_one()},
      {"pooling", std::string(), "mean or attention, a learned per-token softmax weight (default: mean)", {}},
  };
  r.validate = [](const EncoderSettings& s) {
    const auto& pooling = s.text("pooling");
    TORCH_CHECK(pooling.empty() || pooling == "mean" || pooling == "attention", "config key '", s.name_of("pooling"),
                "' must be one of mean, attention; got '", pooling, "'");
  };
  r.make_tower = [](const EncoderSettings& s, const TowerContext& c) -> std::shared_ptr<EncoderModule> {
    return BagOfEmbeddingsEncoder(
               BagOfEmbeddingsEncoderOptions(c.vocab_size, s.integer("dim"))
                   .embedding_dim(s.integer("embedding_dim"))
                   .dropout(s.number("dropout"))
                   .padding_idx(c.pad_id)
                   .pooling(s.text("pooling") == "attention" ? BagPooling::Attention : BagPooling::Mean))
        .ptr();
  };
  r.output_dim = [](const EncoderSettings& s) { return s.integer("dim"); };
  return r;
}

}  // namespace contaccum
