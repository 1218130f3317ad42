// The encoder registry: the built-in encoders, and an encoder added by a
// user program reaching the config, the key list and the pipeline through
// its registration alone.
#include "test_util.h"

#include <contaccum/encoders/registry.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

// A user's encoder: a linear map of mean token embeddings, `width` wide.
class ProbeEncoder : public EncoderModule {
 public:
  ProbeEncoder(int64_t vocab, int64_t width) { embed_ = register_module("embed", torch::nn::Embedding(vocab, width)); }
  torch::Tensor forward(const EncoderInput& in) override { return embed_(in.input_ids).mean(1); }
  int64_t output_dim() const override { return embed_->options.embedding_dim(); }

 private:
  torch::nn::Embedding embed_{nullptr};
};

void register_probe_once() {
  auto& registry = EncoderRegistry::global();
  if (registry.contains("test_probe")) return;
  EncoderRegistration r;
  r.name = "test_probe";
  r.options = {{"probe_width", int64_t{8}, "width of the probe (default 8)", positive_integer()}};
  r.make_tower = [](const EncoderSettings& s, const TowerContext& c) -> std::shared_ptr<EncoderModule> {
    return std::make_shared<ProbeEncoder>(c.vocab_size, s.integer("probe_width"));
  };
  r.output_dim = [](const EncoderSettings& s) { return s.integer("probe_width"); };
  registry.add(r);
}

TEST(EncoderRegistry, HoldsTheBuiltInEncodersAndEachKeyOnce) {
  const auto& registry = EncoderRegistry::global();
  EXPECT_TRUE(registry.contains("bag_of_embeddings"));
  EXPECT_TRUE(registry.contains("transformer"));
  std::vector<std::string> keys;
  for (const auto& spec : registry.options()) keys.push_back(spec.key);
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "a shared key is listed twice";
  for (const char* k : {"dim", "embedding_dim", "dropout", "pooling", "hidden_size", "layers", "heads",
                        "intermediate_size", "pretrained"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
  const auto defaults = registry.defaults();
  EXPECT_EQ(defaults.integer("dim"), 256);
  EXPECT_EQ(defaults.number("dropout"), 0.1);
  EXPECT_EQ(defaults.text("pretrained"), "");
  EXPECT_THAT(test::error_of([&] { defaults.integer("dropout"); }),
              HasSubstr("encoder option 'encoder_options.dropout' has another type"));
  EXPECT_THAT(test::error_of([&] { registry.at("lstm"); }),
              HasSubstr("config key 'encoder' must be one of bag_of_embeddings, transformer"));
}

TEST(EncoderRegistry, RefusesConflictingRegistrations) {
  EncoderRegistry registry;
  registry.add(bag_of_embeddings_registration());
  EXPECT_THAT(test::error_of([&] { registry.add(bag_of_embeddings_registration()); }),
              HasSubstr("an encoder 'bag_of_embeddings' is already registered"));
  auto clash = transformer_registration();
  clash.name = "clash";
  clash.options.push_back({"dim", 3.0, "a double where bag_of_embeddings has an integer", {}});
  EXPECT_THAT(test::error_of([&] { registry.add(clash); }), HasSubstr("declares option 'dim' with another type"));
  EncoderRegistration incomplete;
  incomplete.name = "incomplete";
  EXPECT_THAT(test::error_of([&] { registry.add(incomplete); }), HasSubstr("needs make_tower and output_dim"));
  auto bad_key = transformer_registration();
  bad_key.name = "bad_key";
  bad_key.pretrained_key = "weights_dir";
  EXPECT_THAT(test::error_of([&] { registry.add(bad_key); }), HasSubstr("names pretrained_key 'weights_dir'"));
}

// Registration is all a new encoder needs: its keys parse, print, validate
// and build towers through the pipeline.
TEST(EncoderRegistry, AUserEncoderReachesTheConfigAndThePipeline) {
  register_probe_once();
  const auto keys = TrainConfig::keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "encoder_options.probe_width"), keys.end());
  auto config =
      TrainConfig::parse("encoder: test_probe\nencoder_options: {probe_width: 6}\ntokenizer: {vocab_size: 120}\n");
  EXPECT_EQ(config.model.encoder_options().integer("probe_width"), 6);
  EXPECT_NE(config.to_yaml().find("encoder_options.probe_width: 6\n"), std::string::npos);
  EXPECT_EQ(TrainConfig::parse(config.to_yaml()).model.encoder_options().integer("probe_width"), 6);
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("encoder: test_probe\nencoder_options: {probe_width: 0}\n"); }),
              HasSubstr("config key 'encoder_options.probe_width' must be > 0, got 0"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("encoder_options: {probe_width: wide}\n"); }),
              HasSubstr("config key 'encoder_options.probe_width' must be an integer, got 'wide'"));

  TextTable corpus;
  for (int i = 0; i < 40; ++i) corpus.add("d" + std::to_string(i), "", "alpha beta gamma delta " + std::to_string(i));
  const auto trained = build_model(config, &corpus);
  EXPECT_EQ(trained.model->dim(), 6);
  EXPECT_TRUE(std::dynamic_pointer_cast<ProbeEncoder>(trained.model->query_encoder()) != nullptr);
}

}  // namespace
}  // namespace contaccum
