// docs/ARCHITECTURE.md, "Adding a setting": a setting is a field of its
// options struct plus its row in that struct's table. Here the struct is a
// user's encoder options (the way a program adds its own settings to
// `contaccum train`'s config); the added field `scaled_by` then parses,
// prints, validates and reaches the engine with no other edit anywhere.
#include "test_util.h"

#include <contaccum/encoders/registry.h>
#include <contaccum/train/pipeline.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

struct ScaledProbeOptions {
  /// Default: 8.
  TORCH_ARG(int64_t, scaled_width) = 8;
  /// The added setting: representations are multiplied by it. Default: 1.
  TORCH_ARG(double, scaled_by) = 1.0;

 public:
  static const OptionTable<ScaledProbeOptions>& fields() {
    using O = ScaledProbeOptions;
    static const OptionTable<O> table = {
        option_field<O>("scaled_width", "width of the probe", CONTACCUM_OPTION_ACCESSORS(scaled_width),
                        greater_than(0)),
        // The new row: its name, its doc, its accessors, its rule.
        option_field<O>("scaled_by", "representations are multiplied by it", CONTACCUM_OPTION_ACCESSORS(scaled_by),
                        greater_than(0)),
    };
    return table;
  }
};

// Mean token embeddings times `scaled_by`.
class ScaledProbe : public EncoderModule {
 public:
  ScaledProbe(int64_t vocab, ScaledProbeOptions options) : options_(options) {
    embed_ = register_module("embed", torch::nn::Embedding(vocab, options.scaled_width()));
  }
  torch::Tensor forward(const EncoderInput& in) override { return embed_(in.input_ids).mean(1) * options_.scaled_by(); }
  int64_t output_dim() const override { return options_.scaled_width(); }

 private:
  ScaledProbeOptions options_;
  torch::nn::Embedding embed_{nullptr};
};

void register_scaled_probe_once() {
  auto& registry = EncoderRegistry::global();
  if (registry.contains("test_scaled_probe")) return;
  EncoderRegistration r;
  r.name = "test_scaled_probe";
  r.options = encoder_option_specs(ScaledProbeOptions::fields());
  r.make_tower = [](const EncoderSettings& s, const TowerContext& c) -> std::shared_ptr<EncoderModule> {
    return std::make_shared<ScaledProbe>(c.vocab_size, encoder_options_from(s, ScaledProbeOptions::fields()));
  };
  r.output_dim = [](const EncoderSettings& s) { return s.integer("scaled_width"); };
  registry.add(r);
}

TEST(AddingASetting, AFieldOfAUserStructParsesPrintsValidatesAndReachesTheEngine) {
  register_scaled_probe_once();
  const std::string yaml =
      "encoder: test_scaled_probe\nencoder_options: {scaled_width: 4, scaled_by: 2.5}\n"
      "tokenizer: {vocab_size: 120}\nstrategy: grad_accum\ntotal_batch: 6\nmicro_batch: 3\n";
  // Parses.
  const auto config = TrainConfig::parse(yaml);
  EXPECT_EQ(config.model.encoder_options().number("scaled_by"), 2.5);
  // Prints, with its doc for --list-keys, and reads back.
  EXPECT_THAT(config.to_yaml(), HasSubstr("\nencoder_options.scaled_by: 2.5\n"));
  EXPECT_THAT(config.to_yaml(/*docs=*/true), HasSubstr("scaled_by: 2.5  # representations are multiplied by it"));
  EXPECT_EQ(TrainConfig::parse(config.to_yaml()).model.encoder_options().number("scaled_by"), 2.5);
  // Validates by its rule, named as the config names it.
  EXPECT_THAT(
      test::error_of([] { TrainConfig::parse("encoder: test_scaled_probe\nencoder_options: {scaled_by: 0}\n"); }),
      HasSubstr("config key 'encoder_options.scaled_by' must be > 0, got 0"));
  EXPECT_THAT(test::error_of([] { TrainConfig::parse("encoder_options: {scaled_by: many}\n"); }),
              HasSubstr("config key 'encoder_options.scaled_by' must be a finite number, got 'many'"));

  // Reaches the engine: the loss the strategy computes is the float64 InfoNCE
  // of the unscaled model's representations times 2.5 (same seed, same
  // embeddings).
  TextTable corpus;
  for (int i = 0; i < 40; ++i) corpus.add("d" + std::to_string(i), "", "alpha beta gamma delta " + std::to_string(i));
  auto unscaled_config = config;
  unscaled_config.model.encoder_options().set("scaled_by", 1.0);
  const auto scaled = build_model(config, &corpus);
  auto unscaled = build_model(unscaled_config, &corpus);
  torch::manual_seed(11);
  const auto batch = test::random_batch(6, 0, static_cast<int64_t>(scaled.tokenizer->vocab().size()));
  Strategy strategy(scaled.model, config.strategy_options());
  const auto stats = strategy.compute_gradients(batch);

  torch::NoGradGuard no_grad;
  const auto q = unscaled.model->encode_queries(batch.queries).to(torch::kDouble) * 2.5;
  const auto p = unscaled.model->encode_passages(batch.passages).to(torch::kDouble) * 2.5;
  double expected = 0;
  for (int64_t begin : {0, 3}) {  // grad_accum: the loss of each micro-batch of 3, averaged
    const auto s = q.slice(0, begin, begin + 3).matmul(p.slice(0, begin, begin + 3).t());
    expected += (s.logsumexp(1) - s.diagonal()).mean().item<double>() / 2;
  }
  EXPECT_NEAR(stats.loss, expected, 1e-5 * std::abs(expected));
}

}  // namespace
}  // namespace contaccum
