#include "test_util.h"

namespace contaccum {
namespace {

TEST(DualEncoder, TwoTowersAreIndependentAndSharedIsOne) {
  auto two = test::make_model(0.0, /*shared=*/false);
  auto one = test::make_model(0.0, /*shared=*/true);
  EXPECT_FALSE(two->shared());
  EXPECT_TRUE(one->shared());
  EXPECT_EQ(two->parameters().size(), 2 * one->parameters().size());
  EXPECT_EQ(one->query_parameters().size(), one->passage_parameters().size());
  EXPECT_EQ(one->query_parameters()[0].data_ptr(), one->passage_parameters()[0].data_ptr());
  EXPECT_NE(two->query_parameters()[0].data_ptr(), two->passage_parameters()[0].data_ptr());
  EXPECT_TRUE(two->named_parameters().contains("query_encoder.embedding.weight"));
  EXPECT_TRUE(one->named_parameters().contains("encoder.embedding.weight"));
}

TEST(DualEncoder, NormalizeGivesUnitRows) {
  auto model = test::make_model(0.0, false, 97, 16, /*normalize=*/true);
  const auto b = test::random_batch(4, 1);
  const auto norms = model->encode_passages(b.passages).norm(2, {1});
  EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-12, 1e-12));
}

TEST(DualEncoder, RejectsMismatchedTowers) {
  auto q = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(10, 8)).ptr();
  auto p = BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(10, 16)).ptr();
  EXPECT_THAT([&] { DualEncoder(q, p); },
              ::testing::ThrowsMessage<c10::Error>(
                  ::testing::HasSubstr("query_encoder output_dim (8) must equal passage_encoder output_dim (16)")));
  EXPECT_THAT([&] { DualEncoder(q, nullptr); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("passage_encoder must not be null")));
}

}  // namespace
}  // namespace contaccum
