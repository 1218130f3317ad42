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
