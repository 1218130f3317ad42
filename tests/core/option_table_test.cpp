// Option tables (`OptionTable`): a field declared once parses, prints,
// validates and joins the fingerprint; the engine's own tables cover every
// field; checkpoints refuse options that change results.
#include "test_util.h"
#include "train/train_fixture.h"

#include <contaccum/core/option_table.h>

namespace contaccum {
namespace {

using ::testing::HasSubstr;

enum class Colour { Red, Green };

// A user's options struct, in the library's style.
struct PaintOptions {
  TORCH_ARG(Colour, colour) = Colour::Red;
  TORCH_ARG(double, thickness) = 0.5;
  TORCH_ARG(int64_t, coats) = 2;
  TORCH_ARG(bool, verbose) = false;

 public:
  static const OptionTable<PaintOptions>& fields() {
    static const OptionTable<PaintOptions> table = {
        option_field<PaintOptions>("colour", "red or green", CONTACCUM_OPTION_ACCESSORS(colour)),
        option_field<PaintOptions>("thickness", "millimetres", CONTACCUM_OPTION_ACCESSORS(thickness), greater_than(0)),
        option_field<PaintOptions>("coats", "layers", CONTACCUM_OPTION_ACCESSORS(coats), in_closed_range(1, 5)),
        option_field<PaintOptions>("verbose", "talk", CONTACCUM_OPTION_ACCESSORS(verbose), {}, false),
    };
    return table;
  }
};

}  // namespace

template <>
const std::vector<std::pair<Colour, std::string>>& enum_names<Colour>() {
  static const std::vector<std::pair<Colour, std::string>> names = {{Colour::Red, "red"}, {Colour::Green, "green"}};
  return names;
}

namespace {

const OptionField<PaintOptions>& field(const std::string& name) {
  for (const auto& f : PaintOptions::fields()) {
    if (f.name == name) return f;
  }
  throw std::runtime_error("no field " + name);
}

TEST(OptionTable, AFieldDeclaredOnceParsesPrintsValidatesAndFingerprints) {
  PaintOptions o;
  field("colour").set(o, std::string("green"));
  field("thickness").set(o, int64_t{3});  // an integer is taken for a double
  field("coats").set(o, int64_t{4});
  EXPECT_EQ(o.colour(), Colour::Green);
  EXPECT_EQ(o.thickness(), 3.0);
  EXPECT_EQ(o.coats(), 4);
  EXPECT_EQ(option_value_text(field("colour").get(o)), "green");
  EXPECT_EQ(option_fingerprint(o, PaintOptions::fields()), "colour=green\nthickness=3\ncoats=4\n")
      << "verbose does not change results";
  EXPECT_THAT(test::error_of([&] { field("colour").set(o, std::string("blue")); }),
              HasSubstr("colour must be red or green, got 'blue'"));
  EXPECT_THAT(test::error_of([&] { field("coats").set(o, std::string("many")); }),
              HasSubstr("coats must be an integer, got 'many'"));
  EXPECT_THAT(test::error_of([&] { field("verbose").set(o, int64_t{1}); }),
              HasSubstr("verbose must be true or false, got '1'"));
  o.coats(9);
  EXPECT_THAT(test::error_of([&] { check_option_fields(o, PaintOptions::fields(), "PaintOptions"); }),
              HasSubstr("PaintOptions::coats must be in [1, 5], got 9"));
  o.coats(1).thickness(std::nan(""));
  EXPECT_THAT(test::error_of([&] { check_option_fields(o, PaintOptions::fields(), "PaintOptions"); }),
              HasSubstr("PaintOptions::thickness must be > 0, got nan"));
}

TEST(OptionTable, NumbersPrintInTheShortestFormThatReadsBack) {
  EXPECT_EQ(option_value_text(0.1), "0.1");
  EXPECT_EQ(option_value_text(2e-5), "2e-05");
  EXPECT_EQ(option_value_text(1.0), "1");
  EXPECT_EQ(option_value_text(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(option_value_text(int64_t{-3}), "-3");
  torch::manual_seed(5);
  for (int i = 0; i < 200; ++i) {
    const double v = torch::randn({1}, torch::kDouble).item<double>() * std::pow(10.0, i % 20 - 10);
    EXPECT_EQ(std::stod(option_value_text(v)), v);
  }
}

TEST(OptionTable, FingerprintsNameTheFirstFieldThatDiffers) {
  EXPECT_NO_THROW(check_same_fingerprint("a=1\nb=2\n", "a=1\nb=2\n", "load"));
  EXPECT_NO_THROW(check_same_fingerprint("a=1\n", "a=1\nnew=5\n", "load")) << "a field added since is not compared";
  EXPECT_THAT(test::error_of([&] { check_same_fingerprint("a=1\nb=2\n", "a=1\nb=3\n", "load"); }),
              HasSubstr("load: the checkpoint was written with b = 2, this run has 3"));
  EXPECT_EQ(fingerprint_from_tensor(fingerprint_tensor("x=1\n")), "x=1\n");
}

// Every field of the engine's table reads back what it writes, and the
// table's names are the accessors' (loss fields nested as loss.<name>).
TEST(OptionTable, StrategyOptionsTableCoversEveryField) {
  const auto& table = StrategyOptions::fields();
  std::vector<std::string> names;
  for (const auto& f : table) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"total_batch",
                                             "micro_batch",
                                             "gradients",
                                             "negatives",
                                             "memory_size",
                                             "query_bank",
                                             "passage_bank",
                                             "bank_hard_negatives",
                                             "clear_banks_after_step",
                                             "allow_partial_batch",
                                             "bank_encoder",
                                             "momentum",
                                             "staleness_sample",
                                             "precision",
                                             "bank_dtype",
                                             "mask_false_negatives",
                                             "overlap_gather",
                                             "loss.similarity",
                                             "loss.temperature",
                                             "loss.tiled",
                                             "loss.tile_rows",
                                             "loss.tile_columns",
                                             "loss.return_scores"}));
  auto o = StrategyOptions::contaccum(8, 2, 4);
  for (const auto& f : table) {
    auto copy = o;
    f.set(copy, f.get(o));
    EXPECT_EQ(copy.fingerprint(), o.fingerprint()) << f.name;
  }
  auto hot = o;
  for (const auto& f : table) {
    if (f.name == "loss.temperature") f.set(hot, 0.05);
  }
  EXPECT_EQ(hot.loss().temperature(), 0.05);
  EXPECT_NE(hot.fingerprint(), o.fingerprint());
  EXPECT_EQ(o.staleness_sample(7).fingerprint(), StrategyOptions::contaccum(8, 2, 4).fingerprint())
      << "a diagnostic does not change results";
  EXPECT_EQ(StrategyOptions::contaccum(8, 2, 4).overlap_gather(false).fingerprint(),
            StrategyOptions::contaccum(8, 2, 4).fingerprint())
      << "the order of the towers and the gathers does not change results";
}

// A strategy's checkpoint through the library, resumed with another
// temperature: refused naming the field (before, the banked log-sum-exps at
// the old temperature were kept until overwritten).
TEST(OptionTable, AStrategyRefusesACheckpointOfOtherLossOptions) {
  torch::manual_seed(3);
  auto model = test::make_model(0.0);
  const auto options = StrategyOptions::contaccum(8, 2, 8).loss(InfoNCEOptions().temperature(0.5));
  Strategy trained(model, options);
  test::step(trained, test::random_batch(8, 1));
  auto in = test::through_bytes(trained);
  Strategy other(model, StrategyOptions::contaccum(8, 2, 8).loss(InfoNCEOptions().temperature(0.25)));
  EXPECT_THAT(test::error_of([&] { other.load(in); }),
              HasSubstr("the checkpoint was written with loss.temperature = 0.5, this run has 0.25"));
  Strategy same(model, options);
  auto again = test::through_bytes(trained);
  EXPECT_NO_THROW(same.load(again));
}

TEST(OptionTable, ATrainerRefusesToResumeWithAnotherTemperature) {
  auto set = test::tiny_training_set(16);
  Collator collator(test::hashing_tokenizer(test::kTinyVocab));
  test::TempDir dir;
  const auto options = [&](double temperature) {
    return StrategyOptions::contaccum(8, 4, 8).loss(InfoNCEOptions().temperature(temperature));
  };
  {
    auto model = test::tiny_dual_encoder(1);
    Trainer first(model, options(0.5), set, collator, test::tiny_trainer_options(dir.path.string()).max_steps(2));
    first.train();
  }
  auto model = test::tiny_dual_encoder(1);
  Trainer resumed(model, options(0.1), set, collator, test::tiny_trainer_options(dir.path.string()).max_steps(2));
  EXPECT_THAT(test::error_of([&] { resumed.resume_latest(); }), HasSubstr("loss.temperature = 0.5, this run has 0.1"));
}

// The trainer's own options that change results are in its checkpoints'
// fingerprint too (no hand-kept list): another warm-up or weight decay is
// refused, another log cadence is not.
TEST(OptionTable, ATrainerRefusesToResumeWithOtherTrainerOptionsThatChangeResults) {
  auto set = test::tiny_training_set(16);
  Collator collator(test::hashing_tokenizer(test::kTinyVocab));
  test::TempDir dir;
  const auto strategy = StrategyOptions::contaccum(8, 4, 8);
  const auto trainer = [&] { return test::tiny_trainer_options(dir.path.string()).max_steps(2).warmup_steps(1); };
  {
    auto model = test::tiny_dual_encoder(1);
    Trainer first(model, strategy, set, collator, trainer());
    first.train();
  }
  auto resume = [&](TrainerOptions options) {
    auto model = test::tiny_dual_encoder(1);
    Trainer again(model, strategy, set, collator, options);
    return test::error_of([&] { again.resume_latest(); });
  };
  EXPECT_THAT(resume(trainer().warmup_steps(0)), HasSubstr("TrainerOptions: the checkpoint was written with "
                                                           "warmup_steps = 1, this run has 0"));
  auto decay = trainer();
  decay.optimizer().weight_decay(0.5);
  EXPECT_THAT(resume(decay), HasSubstr("optimizer.weight_decay = 0.01, this run has 0.5"));
  EXPECT_EQ(resume(trainer().log_every(7).keep_checkpoints(5)), "no error");
}

TEST(OptionTable, TrainerOptionsRulesAreTheTablesOwn) {
  EXPECT_THAT(test::error_of([] { TrainerOptions().log_every(0).validate(); }),
              HasSubstr("TrainerOptions::log_every must be >= 1, got 0"));
  EXPECT_THAT(test::error_of([] { TrainerOptions().max_grad_norm(-1).validate(); }),
              HasSubstr("TrainerOptions::max_grad_norm must be >= 0 (0 disables clipping), got -1"));
  EXPECT_THAT(test::error_of([] { TrainerOptions().epochs(0).validate(); }),
              HasSubstr("TrainerOptions::epochs must be >= 1 when max_steps is 0, got 0"));
  EXPECT_NO_THROW(TrainerOptions().epochs(0).max_steps(3).validate());
  EXPECT_THAT(test::error_of([] { TrainerOptions().eval_metric("mrr@11").validate(); }),
              HasSubstr("TrainerOptions::eval_metric must be one of top@1"));
}

}  // namespace
}  // namespace contaccum
