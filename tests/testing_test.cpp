// The encoder check must catch the faults it promises to catch.
#include "test_util.h"

#include <contaccum/testing.h>

namespace contaccum {
namespace {

// Configurable faulty encoder.
class FaultyEncoder : public EncoderModule {
 public:
  enum class Fault { None, WrongShape, UnusedParameter, PrivateRandomness, NonFinite };
  explicit FaultyEncoder(Fault fault) : fault_(fault), gen_(at::make_generator<at::CPUGeneratorImpl>(7)) {
    weight_ = register_parameter("weight", torch::randn({4}));
    unused_ = register_parameter("unused", torch::randn({2}));
  }
  torch::Tensor forward(const EncoderInput& in) override {
    auto x = in.input_ids.to(torch::kFloat).slice(1, 0, 4) * weight_;
    if (fault_ != Fault::UnusedParameter) x = x + unused_.sum();
    if (fault_ == Fault::WrongShape) return x.slice(1, 0, 3);
    if (fault_ == Fault::PrivateRandomness && is_training()) x = x * torch::rand(x.sizes(), gen_);
    if (fault_ == Fault::NonFinite) x = x / 0.0;
    return x;
  }
  int64_t output_dim() const override { return 4; }

 private:
  Fault fault_;
  at::Generator gen_;
  torch::Tensor weight_, unused_;
};

std::string check(FaultyEncoder::Fault fault) {
  FaultyEncoder enc(fault);
  EncoderInput in{torch::randint(1, 9, {3, 5}, torch::kLong), {}, {}};
  return testing::check_encoder(enc, in).message();
}

TEST(CheckEncoder, PassesAGoodEncoder) { EXPECT_EQ(check(FaultyEncoder::Fault::None), ""); }

TEST(CheckEncoder, CatchesEachFault) {
  EXPECT_THAT(check(FaultyEncoder::Fault::WrongShape), ::testing::HasSubstr("output must be [3, 4], got [3, 3]"));
  EXPECT_THAT(check(FaultyEncoder::Fault::UnusedParameter),
              ::testing::HasSubstr("parameter 'unused' gets no gradient"));
  EXPECT_THAT(check(FaultyEncoder::Fault::PrivateRandomness), ::testing::HasSubstr("GradCache cannot replay"));
  EXPECT_THAT(check(FaultyEncoder::Fault::NonFinite), ::testing::HasSubstr("inf or NaN"));
}

TEST(CheckEncoder, LeavesModeAndGradientsAsTheyWere) {
  FaultyEncoder enc(FaultyEncoder::Fault::None);
  enc.eval();
  enc.named_parameters()["weight"].mutable_grad() = torch::full({4}, 3.0);
  EncoderInput in{torch::randint(1, 9, {3, 5}, torch::kLong), {}, {}};
  ASSERT_TRUE(testing::check_encoder(enc, in).ok());
  EXPECT_FALSE(enc.is_training());
  EXPECT_TRUE(torch::equal(enc.named_parameters()["weight"].grad(), torch::full({4}, 3.0)));
  EXPECT_FALSE(enc.named_parameters()["unused"].grad().defined());
}

}  // namespace
}  // namespace contaccum
