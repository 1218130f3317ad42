#include "contaccum/train/run_options.h"

#include <c10/util/Exception.h>

namespace contaccum {

const OptionTable<TrainingDataOptions>& TrainingDataOptions::fields() {
  using O = TrainingDataOptions;
  static const OptionTable<O> table = {
      option_field<O>("corpus", "BEIR corpus.jsonl", CONTACCUM_OPTION_ACCESSORS(corpus)),
      option_field<O>("queries", "BEIR queries.jsonl (training and dev queries)", CONTACCUM_OPTION_ACCESSORS(queries)),
      option_field<O>("train_qrels",
                      "training qrels: the examples, or with a hard_negatives file every query's relevant passages",
                      CONTACCUM_OPTION_ACCESSORS(train_qrels)),
      option_field<O>("hard_negatives", "training examples with mined negatives, by id",
                      CONTACCUM_OPTION_ACCESSORS(hard_negatives)),
      option_field<O>("dev_qrels", "dev qrels for periodic evaluation and eval.json",
                      CONTACCUM_OPTION_ACCESSORS(dev_qrels), {}, false),
      option_field<O>("skip_bad_records", "skip (and count) bad records instead of stopping",
                      CONTACCUM_OPTION_ACCESSORS(skip_bad_records)),
      option_field<O>("dev_max_queries", "evaluate on at most this many dev queries (0: all)",
                      CONTACCUM_OPTION_ACCESSORS(dev_max_queries), at_least(0), false),
  };
  return table;
}

void TrainingDataOptions::require_files() const {
  TORCH_CHECK(!corpus().empty(), "config key 'data.corpus' is required");
  TORCH_CHECK(!queries().empty(), "config key 'data.queries' is required");
  TORCH_CHECK(!train_qrels().empty() || !hard_negatives().empty(),
              "config key 'data.train_qrels' or 'data.hard_negatives' is required");
}

const OptionTable<TokenizerOptions>& TokenizerOptions::fields() {
  using O = TokenizerOptions;
  static const OptionTable<O> table = {
      option_field<O>("vocab", "a vocab.txt; empty trains a WordPiece vocabulary on the corpus",
                      CONTACCUM_OPTION_ACCESSORS(vocab)),
      option_field<O>("vocab_size", "size of a trained vocabulary", CONTACCUM_OPTION_ACCESSORS(vocab_size),
                      at_least(100)),
      option_field<O>("lower_case", "lower-case and strip accents before WordPiece",
                      CONTACCUM_OPTION_ACCESSORS(lower_case)),
  };
  return table;
}

const OptionTable<ModelOptions>& ModelOptions::fields() {
  using O = ModelOptions;
  static const OptionTable<O> table = {
      option_field<O>("encoder", "a registered encoder (bag_of_embeddings, transformer, or one a program adds)",
                      CONTACCUM_OPTION_ACCESSORS(encoder)),
      option_field<O>("shared", "one tower for queries and passages", CONTACCUM_OPTION_ACCESSORS(shared)),
      option_field<O>("tied_init", "two towers start from the same initial weights",
                      CONTACCUM_OPTION_ACCESSORS(tied_init)),
      option_field<O>("similarity",
                      "how the model scores a query and a passage: dot or cosine (training, evaluation and indexes)",
                      CONTACCUM_OPTION_ACCESSORS(similarity)),
  };
  return table;
}

namespace {

// An encoder option's value as an option table carries it, and back (typed
// as the key's default: an integer is taken for a number).
EncoderValue encoder_value(const std::string& name, const EncoderValue& like, const OptionValue& value) {
  return std::visit(
      [&](const auto& l) -> EncoderValue {
        using T = std::decay_t<decltype(l)>;
        return detail::from_option_value<T>(name, value);
      },
      like);
}

}  // namespace

OptionTable<ModelOptions> ModelOptions::encoder_option_fields(const std::string& prefix) {
  OptionTable<ModelOptions> table;
  for (const auto& spec : EncoderRegistry::global().options()) {
    OptionField<ModelOptions> f;
    f.name = prefix + spec.key;
    f.doc = spec.doc;
    f.get = [key = spec.key](const ModelOptions& o) { return option_value_of(o.encoder_options().values().at(key)); };
    f.set = [key = spec.key, name = f.name, like = spec.default_value](ModelOptions& o, const OptionValue& v) {
      o.encoder_options().set(key, encoder_value(name, like, v));
    };
    table.push_back(std::move(f));
  }
  return table;
}

void ModelOptions::validate() const {
  const auto& registry = EncoderRegistry::global();
  const auto& chosen = registry.at(encoder());  // throws listing the names
  for (const auto& spec : registry.options()) {
    if (!spec.check) continue;
    const auto problem = spec.check(encoder_options().values().at(spec.key));
    TORCH_CHECK(problem.empty(), "config key '", encoder_options().name_of(spec.key), "' ", problem);
  }
  if (chosen.validate) chosen.validate(encoder_options());
}

std::string ModelOptions::pretrained_directory() const {
  const auto& key = EncoderRegistry::global().at(encoder()).pretrained_key;
  return key.empty() ? "" : encoder_options().text(key);
}

}  // namespace contaccum
