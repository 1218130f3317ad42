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

// The pooling's own kernels (src/encoders/weighted_bag_sum.cpp), wide
// enough to be cut into chunks for two threads (300 columns: two chunks of
// 128 and a tail; 13 bags: three chunks of 4 and one), in float32: the pooled
// rows and the table's gradient are the sums in token order, each product
// and sum rounded on its own (a reference of one tensor operation per
// token), within rounding of float64, and the same bits on one thread and on
// two. With the projection the identity, the output is the pooled row.
TEST(BagOfEmbeddingsEncoder, PoolsAndAddsGradientsInTokenOrderOnOneThreadOrTwo) {
  if (blas_threads() < 0 || max_parallelism() < 2) GTEST_SKIP() << "the kernels' threads follow OpenBLAS's";
  const test::ComputeThreadsGuard restore;
  const int64_t width = 300, vocab = 97, bags = 13, seq = 23;
  torch::manual_seed(21);
  const auto ids = torch::randint(0, vocab, {bags, seq}, torch::kLong);  // id 0 is padding
  auto mask = (torch::rand({bags, seq}) < 0.8).to(torch::kLong);
  mask[5].zero_();  // a row of masked tokens only (weights all zero)
  ids[7].zero_();   // a row of padding ids only
  ids[3][4] = 7;
  ids[3][9] = 7;  // a repeated id
  const auto upstream = torch::randn({bags, width});

  struct Run {
    torch::Tensor out, table_grad;
  };
  auto run = [&](int threads) {
    set_compute_threads(threads);
    torch::manual_seed(5);
    BagOfEmbeddingsEncoder enc(BagOfEmbeddingsEncoderOptions(vocab, width).embedding_dim(width).dropout(0.0));
    auto params = enc->named_parameters();
    {
      torch::NoGradGuard no_grad;
      params["projection.weight"].copy_(torch::eye(width));
      params["projection.bias"].zero_();
    }
    Run r;
    r.out = enc->forward(EncoderInput{ids, mask, {}});
    (r.out * upstream).sum().backward();
    r.out = r.out.detach();
    r.table_grad = params["embedding.weight"].grad().clone();
    return std::make_pair(r, params["embedding.weight"].detach().clone());
  };
  const auto [one, table] = run(1);
  const auto two = run(2).first;
  EXPECT_TRUE(torch::equal(one.out, two.out)) << "pooled rows differ between one thread and two";
  EXPECT_TRUE(torch::equal(one.table_grad, two.table_grad)) << "table gradient differs between one thread and two";

  // The reference, token by token in float32.
  const auto weights = mask.to(torch::kFloat) / mask.sum(1, true).clamp_min(1).to(torch::kFloat);
  auto want_out = torch::zeros({bags, width});
  auto want_grad = torch::zeros({vocab, width});
  for (int64_t b = 0; b < bags; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      const int64_t id = ids[b][t].item<int64_t>();
      if (id == 0) continue;
      const auto w = weights[b][t];
      want_out[b] = want_out[b] + w * table[id];
    }
  }
  for (int64_t b = 0; b < bags; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      const int64_t id = ids[b][t].item<int64_t>();
      if (id != 0) want_grad[id] = want_grad[id] + weights[b][t] * upstream[b];
    }
  }
  EXPECT_TRUE(torch::equal(one.out, want_out)) << (one.out - want_out).abs().max().item<float>();
  EXPECT_TRUE(torch::equal(one.table_grad, want_grad)) << (one.table_grad - want_grad).abs().max().item<float>();
  // And within float32 rounding of the float64 sums.
  const auto w64 = weights.to(torch::kDouble) * (ids != 0).to(torch::kDouble);
  const auto out64 = torch::einsum(
      "bt,btd->bd", {w64, table.to(torch::kDouble).index_select(0, ids.reshape({-1})).view({bags, seq, width})});
  EXPECT_TRUE(torch::allclose(one.out.to(torch::kDouble), out64, 1e-6, 1e-6));
}

// Off the kernels' conditions (here a bf16 encoder on the CPU) the pooling is
// an index_add_ of the tokens' weighted rows and its backward ATen's
// operations (the backward a GPU takes too): the output and every gradient
// of the table and of the attention pooling's token logits within bf16
// rounding of the float64 computation of the same values, padding left out
// even where the mask attends to it.
TEST(BagOfEmbeddingsEncoder, BackpropagatesInBf16OffTheFloat32Kernels) {
  const int64_t vocab = 40, width = 8, bags = 5, seq = 7;
  torch::manual_seed(31);
  const auto ids = torch::randint(0, vocab, {bags, seq}, torch::kLong);  // id 0 is padding
  const auto mask = (torch::rand({bags, seq}) < 0.8).to(torch::kLong);
  ids[2][3] = 0;  // a padding id the mask attends to
  mask[2][3] = 1;
  const auto upstream = torch::randn({bags, width}, torch::kDouble);
  auto make = [&](torch::ScalarType type) {
    torch::manual_seed(6);
    BagOfEmbeddingsEncoder enc(
        BagOfEmbeddingsEncoderOptions(vocab, width).embedding_dim(width).dropout(0.0).pooling(BagPooling::Attention));
    enc->to(type);
    return enc;
  };
  auto bf16 = make(torch::kBFloat16), f64 = make(torch::kDouble);
  {  // the same numbers in both: the bf16 parameters' values
    torch::NoGradGuard no_grad;
    auto from = bf16->named_parameters();
    for (auto& p : f64->named_parameters()) p.value().copy_(from[p.key()]);
  }
  const auto out = bf16->forward(EncoderInput{ids, mask, {}});
  ASSERT_EQ(out.scalar_type(), torch::kBFloat16);
  (out.to(torch::kDouble) * upstream).sum().backward();
  const auto want = f64->forward(EncoderInput{ids, mask, {}});
  (want * upstream).sum().backward();
  EXPECT_TRUE(torch::allclose(out.to(torch::kDouble), want, 2e-2, 2e-2))
      << (out.to(torch::kDouble) - want).abs().max().item<double>();
  auto got = bf16->named_parameters();
  for (const auto& p : f64->named_parameters()) {
    const auto g = got[p.key()].grad();
    ASSERT_TRUE(g.defined()) << p.key();
    const double scale = p.value().grad().abs().max().item<double>() + 1e-3;
    EXPECT_LT((g.to(torch::kDouble) - p.value().grad()).abs().max().item<double>(), 2e-2 * scale) << p.key();
  }
  // The padding row's gradient stays zero.
  EXPECT_EQ(got["embedding.weight"].grad()[0].abs().max().item<double>(), 0.0);
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
