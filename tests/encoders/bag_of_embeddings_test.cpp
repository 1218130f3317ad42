#include "test_util.h"

#include <contaccum/testing.h>

namespace contaccum {
namespace {

TEST(BagOfEmbeddingsEncoder, PassesTheEncoderCheckWithDropout) {
  torch::manual_seed(3);
  BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(50, 8).embedding_dim(6).dropout(0.3));
  const auto sample = test::random_batch(7, 0, 50).queries;
  const auto report = testing::check_encoder(*enc, sample);
  EXPECT_TRUE(report.ok()) << report.message();
  enc->to(torch::kDouble);
  EXPECT_TRUE(testing::check_encoder(*enc, sample).ok());
}

TEST(BagOfEmbeddingsEncoder, IsAMaskedMeanThenProjection) {
  torch::manual_seed(4);
  BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(20, 3).embedding_dim(4).dropout(0.0));
  enc->to(torch::kDouble);
  EncoderInput in{torch::tensor({{5, 7, 9}, {2, 0, 0}}), torch::tensor({{1, 1, 0}, {1, 0, 0}}), {}};
  const auto out = enc->forward(in);
  auto params = enc->named_parameters();
  const auto E = params["embedding.weight"], W = params["projection.weight"], b = params["projection.bias"];
  const auto row0 = (E[5] + E[7]) / 2, row1 = E[2];
  const auto want = torch::stack({row0, row1}).matmul(W.t()) + b;
  EXPECT_TRUE(torch::allclose(out, want, 1e-12, 1e-12));
  // Padded positions do not matter, whatever their id.
  in.input_ids[0][2] = 11;
  EXPECT_TRUE(torch::allclose(enc->forward(in), want, 1e-12, 1e-12));
}

// The pooled embedding-bag against the textbook formulation (gather, mask,
// sum, divide) in float64: outputs and every parameter's gradient, with
// repeated ids, masked non-padding ids, padding ids and an all-padding row.
TEST(BagOfEmbeddingsEncoder, GradientsMatchTheTextbookMaskedMean) {
  const auto ids4 = torch::tensor({{3, 3, 7, 0, 0}, {12, 29, 1, 5, 4}, {0, 0, 0, 0, 0}, {8, 21, 9, 0, 13}});
  const auto mask4 = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}, {1, 0, 1, 0, 1}});
  // 20 ids (< vocabulary 30) take the sparse backward, 40 the dense one; a
  // second backward accumulates into the existing gradient.
  for (const int64_t copies : {1, 2}) {
    torch::manual_seed(8);
    BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(30, 5).embedding_dim(4).dropout(0.0));
    enc->to(torch::kDouble);
    const auto ids = ids4.repeat({copies, 1}), mask = mask4.repeat({copies, 1});
    const int64_t rows = ids.size(0);
    const auto upstream = torch::randn({rows, 5}, torch::kDouble);
    for (int pass = 0; pass < 2; ++pass) (enc->forward(EncoderInput{ids, mask, {}}) * upstream).sum().backward();

    auto params = enc->named_parameters();
    const auto E = params["embedding.weight"].detach().clone().requires_grad_(true);
    const auto W = params["projection.weight"].detach().clone().requires_grad_(true);
    const auto b = params["projection.bias"].detach().clone().requires_grad_(true);
    // Textbook: E[ids] masked, summed, divided by the count; the padding row
    // (id 0) is excluded from the gradient, as torch::nn::Embedding does.
    const auto m = mask.to(torch::kDouble);
    const auto gathered = E.index_select(0, ids.reshape({-1})).view({rows, 5, 4});
    const auto pooled = (gathered * m.unsqueeze(-1)).sum(1) / m.sum(1, true).clamp_min(1.0);
    (2.0 * (pooled.matmul(W.t()) + b) * upstream).sum().backward();
    auto want_embedding_grad = E.grad().clone();
    want_embedding_grad[0].zero_();

    const auto& got = params["embedding.weight"].grad();
    EXPECT_FALSE(got.is_sparse()) << "optimizers must see a dense gradient";
    EXPECT_TRUE(torch::allclose(got, want_embedding_grad, 1e-12, 1e-12)) << copies;
    EXPECT_TRUE(torch::allclose(params["projection.weight"].grad(), W.grad(), 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(params["projection.bias"].grad(), b.grad(), 1e-12, 1e-12));
    EXPECT_EQ(got[0].abs().sum().item<double>(), 0.0) << "padding row";
    EXPECT_EQ(got[21].abs().sum().item<double>(), 0.0) << "masked id";
    EXPECT_GT(got[3].abs().sum().item<double>(), 0.0);
  }
}

// Attention pooling against the textbook formulation in float64: weights
// exp(logit[id]) over the real tokens of a row, normalised; outputs and every
// gradient (embeddings, logits, projection), sparse and dense backward,
// accumulated over two passes.
TEST(BagOfEmbeddingsEncoder, AttentionPoolingMatchesTheTextbookSoftmaxWeightedMean) {
  const auto ids4 = torch::tensor({{3, 3, 7, 0, 0}, {12, 29, 1, 5, 4}, {0, 0, 0, 0, 0}, {8, 21, 9, 0, 13}});
  const auto mask4 = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}, {1, 0, 1, 0, 1}});
  for (const int64_t copies : {1, 2}) {
    torch::manual_seed(9 + copies);
    BagOfEmbeddingsEncoder enc(
        BagOfEmbeddingsEncoderOptions(30, 5).embedding_dim(4).dropout(0.0).pooling(BagPooling::Attention));
    enc->to(torch::kDouble);
    auto params = enc->named_parameters();
    ASSERT_TRUE(params.contains("token_logit.weight"));
    {
      torch::NoGradGuard no_grad;
      params["token_logit.weight"].normal_(0.0, 2.0);  // trained logits, not the zero start
      params["token_logit.weight"][21].fill_(40.0);    // a masked id must not take the weight
    }
    const auto ids = ids4.repeat({copies, 1}), mask = mask4.repeat({copies, 1});
    const int64_t rows = ids.size(0);
    const auto upstream = torch::randn({rows, 5}, torch::kDouble);
    for (int pass = 0; pass < 2; ++pass) (enc->forward(EncoderInput{ids, mask, {}}) * upstream).sum().backward();

    const auto E = params["embedding.weight"].detach().clone().requires_grad_(true);
    const auto L = params["token_logit.weight"].detach().clone().requires_grad_(true);
    const auto W = params["projection.weight"].detach().clone().requires_grad_(true);
    const auto b = params["projection.bias"].detach().clone().requires_grad_(true);
    std::vector<torch::Tensor> pooled_rows;
    for (int64_t r = 0; r < rows; ++r) {
      auto numerator = torch::zeros({4}, torch::kDouble);
      auto denominator = torch::zeros({}, torch::kDouble);
      for (int64_t t = 0; t < ids.size(1); ++t) {
        if (mask[r][t].item<int64_t>() == 0) continue;
        const int64_t id = ids[r][t].item<int64_t>();
        const auto w = L[id][0].exp();
        numerator = numerator + w * (id == 0 ? torch::zeros({4}, torch::kDouble) : E[id]);
        denominator = denominator + w;
      }
      pooled_rows.push_back(denominator.item<double>() > 0 ? numerator / denominator : numerator);
    }
    const auto want = torch::stack(pooled_rows).matmul(W.t()) + b;
    EXPECT_TRUE(torch::allclose(enc->forward(EncoderInput{ids, mask, {}}), want, 1e-12, 1e-12));
    (2.0 * want * upstream).sum().backward();

    auto want_logit_grad = L.grad().clone();
    EXPECT_TRUE(torch::allclose(params["token_logit.weight"].grad(), want_logit_grad, 1e-12, 1e-12)) << copies;
    EXPECT_TRUE(torch::allclose(params["embedding.weight"].grad(), E.grad(), 1e-12, 1e-12)) << copies;
    EXPECT_TRUE(torch::allclose(params["projection.weight"].grad(), W.grad(), 1e-12, 1e-12));
    EXPECT_TRUE(torch::allclose(params["projection.bias"].grad(), b.grad(), 1e-12, 1e-12));
    EXPECT_EQ(params["token_logit.weight"].grad()[21].item<double>(), 0.0) << "masked id";
    EXPECT_GT(params["token_logit.weight"].grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(BagOfEmbeddingsEncoder, UntrainedAttentionPoolingIsTheMean) {
  torch::manual_seed(5);
  BagOfEmbeddingsEncoder mean(BagOfEmbeddingsEncoderOptions(40, 6).embedding_dim(5).dropout(0.0));
  BagOfEmbeddingsEncoder attention(
      BagOfEmbeddingsEncoderOptions(40, 6).embedding_dim(5).dropout(0.0).pooling(BagPooling::Attention));
  {
    torch::NoGradGuard no_grad;
    auto from = mean->named_parameters();
    for (auto& p : attention->named_parameters()) {
      if (from.contains(p.key())) p.value().copy_(from[p.key()]);
    }
  }
  const auto sample = test::random_batch(6, 0, 40).queries;
  EXPECT_TRUE(torch::allclose(attention->forward(sample), mean->forward(sample), 1e-6, 1e-6));
  EXPECT_TRUE(testing::check_encoder(*attention, sample).ok());
}

TEST(BagOfEmbeddingsEncoder, RejectsIdsOutsideTheVocabulary) {
  BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(10, 3));
  EXPECT_THAT(test::error_of([&] {
                enc->forward(EncoderInput{torch::tensor({{1, 10}}), {}, {}});
              }),
              ::testing::HasSubstr("input_ids must be in [0, vocab_size = 10)"));
  EXPECT_THAT(test::error_of([&] {
                enc->forward(EncoderInput{torch::tensor({{-1, 2}}), {}, {}});
              }),
              ::testing::HasSubstr("input_ids must be in [0, vocab_size = 10)"));
}

TEST(BagOfEmbeddingsEncoder, RejectsBadOptions) {
  EXPECT_THAT([] { BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(0, 3)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("vocab_size must be > 0, got 0")));
  EXPECT_THAT([] { BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(10, 3).dropout(1.5)); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("dropout must be in [0, 1), got 1.5")));
  EXPECT_THAT([] { BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(10, 3).padding_idx(10)); },
              ::testing::ThrowsMessage<c10::Error>(
                  ::testing::HasSubstr("padding_idx must be in [0, vocab_size = 10), got 10")));
}

}  // namespace
}  // namespace contaccum
