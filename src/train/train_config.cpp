#include "contaccum/train/train_config.h"

#include "contaccum/core/device.h"

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace contaccum {
namespace {

using Config = TrainConfig;

// A field of one of TrainConfig's members, under its config key.
template <typename Inner>
OptionField<Config> key(const std::string& name, Inner Config::*member, const OptionTable<Inner>& table,
                        const std::string& field, const std::string& doc = "") {
  auto f = member_field(name, member, table, field);
  if (!doc.empty()) f.doc = doc;  // what the key does in a whole run, beyond its member
  return f;
}

// Every field of `table`, keyed `prefix` + its name.
template <typename Inner>
void keys_of(OptionTable<Config>& out, const std::string& prefix, Inner Config::*member,
             const OptionTable<Inner>& table) {
  for (const auto& f : table) out.push_back(member_field(prefix + f.name, member, table, f.name));
}

// A field TrainConfig holds itself.
OptionField<Config> own(const std::string& name, const std::string& doc, int64_t Config::*member, OptionRule rule) {
  return option_field<Config>(
      name, doc, [member](const Config& c) { return c.*member; }, [member](Config& c, int64_t v) { c.*member = v; },
      std::move(rule), false);
}

// The keys in the order configs have always printed them.
OptionTable<Config> config_fields() {
  const auto& engine = StrategyOptions::fields();
  const auto& trainer = TrainerOptions::fields();
  const auto& model = ModelOptions::fields();
  OptionTable<Config> t;
  keys_of(t, "data.", &Config::data, TrainingDataOptions::fields());
  t.push_back(option_field<Config>(
      "strategy", "full_batch, grad_accum, grad_cache, contaccum or contaccum_grad_cache",
      [](const Config& c) { return c.strategy; }, [](Config& c, const std::string& v) { c.strategy = v; },
      one_of(StrategyOptions::preset_names())));
  for (const char* name : {"total_batch", "micro_batch", "memory_size", "query_bank", "passage_bank",
                           "bank_hard_negatives", "clear_banks_after_step", "bank_encoder", "momentum"}) {
    t.push_back(key(name, &Config::engine, engine, name));
  }
  t.push_back(key("hard_negatives", &Config::trainer, trainer, "hard_negatives"));
  t.push_back(key("similarity", &Config::model, model, "similarity"));
  t.push_back(key("temperature", &Config::engine, engine, "loss.temperature"));
  t.push_back(key("tiled_loss", &Config::engine, engine, "loss.tiled"));
  t.push_back(key("precision", &Config::engine, engine, "precision"));
  t.push_back(key("bank_dtype", &Config::engine, engine, "bank_dtype"));
  t.push_back(key("mask_false_negatives", &Config::engine, engine, "mask_false_negatives"));
  t.push_back(key("encoder", &Config::model, model, "encoder"));
  t.push_back(key("encoder_options.shared", &Config::model, model, "shared"));
  t.push_back(key("encoder_options.tied_init", &Config::model, model, "tied_init"));
  keys_of(t, "", &Config::model, ModelOptions::encoder_option_fields("encoder_options."));
  keys_of(t, "tokenizer.", &Config::tokenizer, TokenizerOptions::fields());
  keys_of(t, "", &Config::lengths, CollatorOptions::fields());
  t.push_back(key("epochs", &Config::trainer, trainer, "epochs"));
  t.push_back(key("max_steps", &Config::trainer, trainer, "max_steps"));
  t.push_back(key("lr", &Config::trainer, trainer, "optimizer.lr"));
  t.push_back(key("weight_decay", &Config::trainer, trainer, "optimizer.weight_decay"));
  t.push_back(key("fused_adamw", &Config::trainer, trainer, "optimizer.fused"));
  t.push_back(key("row_sparse_embeddings", &Config::trainer, trainer, "optimizer.row_sparse_embeddings"));
  for (const char* name :
       {"final_lr_ratio", "warmup_steps", "max_grad_norm", "non_finite", "max_consecutive_skips", "loss_scaling"}) {
    t.push_back(key(name, &Config::trainer, trainer, name));
  }
  for (const auto& f : LossScalerOptions::fields()) {
    const auto name = "loss_scaler." + f.name;
    t.push_back(key(name, &Config::trainer, trainer, name));
  }
  t.push_back(
      key("seed", &Config::trainer, trainer, "seed", "seeds the model's initialisation, dropout and the sampler"));
  t.push_back(own("threads", "LibTorch intra-op threads; 0 keeps LibTorch's default", &Config::threads, at_least(0)));
  // Where a run computes, not what: a run may resume on another device.
  t.push_back(option_field<Config>(
      "device", "where the model and banks live: auto, cpu, cuda (this rank's GPU) or cuda:N",
      [](const Config& c) { return c.device; }, [](Config& c, const std::string& v) { c.device = v; }, device_spec(),
      false));
  t.push_back(key("distributed.backend", &Config::distributed, DistributedOptions::fields(), "backend"));
  t.push_back(key("distributed.timeout", &Config::distributed, DistributedOptions::fields(), "timeout"));
  t.push_back(key("distributed.sparse_rows", &Config::distributed, DistributedOptions::fields(), "sparse_rows"));
  t.push_back(key("distributed.overlap_gather", &Config::engine, engine, "overlap_gather"));
  for (const char* name : {"log_every", "eval_every", "eval_metric"}) {
    t.push_back(key(name, &Config::trainer, trainer, name));
  }
  t.push_back(key("eval_batch_size", &Config::eval, DenseEvalOptions::fields(), "batch_size"));
  for (const char* name : {"checkpoint_every", "keep_checkpoints", "staleness_every", "count_allocations"}) {
    t.push_back(key(name, &Config::trainer, trainer, name));
  }
  t.push_back(own("staleness_sample", "banked examples re-encoded by each staleness measurement",
                  &Config::staleness_sample, greater_than(0)));
  return t;
}

const OptionField<Config>* find_key(const OptionTable<Config>& table, const std::string& name) {
  for (const auto& f : table) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// A YAML scalar as a value of `like`'s type; false when it is not one (or
// not finite).
bool parse_scalar(const std::string& text, const OptionValue& like, OptionValue& out) {
  try {
    return std::visit(
        [&](const auto& l) {
          using T = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out = text;
            return true;
          } else {
            const auto v = YAML::Load(text).as<T>();
            out = v;
            if constexpr (std::is_same_v<T, double>) return static_cast<bool>(std::isfinite(v));
            return true;
          }
        },
        like);
  } catch (const YAML::Exception&) {
    return false;
  }
}

const char* type_words(const OptionValue& like) {
  if (std::holds_alternative<bool>(like)) return "true or false";
  return std::holds_alternative<double>(like) ? "a finite number" : "an integer";
}

void assign(Config& config, const OptionTable<Config>& table, const std::string& name, const std::string& text,
            const std::string& source) {
  const auto* f = find_key(table, name);
  TORCH_CHECK(f != nullptr, source, ": unknown config key '", name, "' (see `contaccum train --list-keys`)");
  const auto like = f->get(config);
  OptionValue value;
  TORCH_CHECK(parse_scalar(text, like, value), source, ": config key '", name, "' must be ", type_words(like),
              ", got '", text, "'");
  try {
    f->set(config, value);
  } catch (const c10::Error& e) {
    // An unknown enum name: the message starts with the key.
    const std::string message = e.what_without_backtrace();
    TORCH_CHECK(false, source, ": config key '", name, "'",
                message.rfind(name, 0) == 0 ? message.substr(name.size()) : ": " + message);
  }
}

// Flattens nested maps into dotted keys; every leaf must be a scalar, and no
// key may appear twice (yaml-cpp keeps the last silently).
void flatten(const YAML::Node& node, const std::string& prefix, const std::string& source,
             std::vector<std::pair<std::string, std::string>>& out, std::map<std::string, int>& lines) {
  for (const auto& item : node) {
    const auto name = item.first.as<std::string>();
    const auto key = prefix.empty() ? name : prefix + "." + name;
    const int line = item.first.Mark().line + 1;
    const auto& value = item.second;
    const auto [seen, fresh] = lines.emplace(key, line);
    TORCH_CHECK(fresh || value.IsMap(), source, ":", line, ": config key '", key, "' is given twice (first on line ",
                seen->second, ")");
    if (value.IsMap()) {
      flatten(value, key, source, out, lines);
    } else if (value.IsNull()) {
      out.emplace_back(key, "");
    } else {
      TORCH_CHECK(value.IsScalar(), source, ":", line, ": config key '", key, "' must be a single value, got a list");
      out.emplace_back(key, value.Scalar());
    }
  }
}

// A value as to_yaml prints it: strings (and enum names) quoted, numbers in
// the shortest form that reads back exactly (0.1, not 0.10000000000000001).
std::string yaml_text(const OptionValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << *s;
    return e.c_str();
  }
  return option_value_text(value);
}

// Where a range error's key was given ("--set k=v" or " (line N)").
[[noreturn]] void blame(const c10::Error& e, const std::string& source,
                        const std::map<std::string, std::string>& given_on) {
  const std::string msg = e.what_without_backtrace();
  const auto open = msg.find("config key '");
  const auto begin = open == std::string::npos ? open : open + 12;
  const auto end = begin == std::string::npos ? begin : msg.find('\'', begin);
  const auto found = end == std::string::npos ? given_on.end() : given_on.find(msg.substr(begin, end - begin));
  if (found != given_on.end() && found->second.rfind("--set", 0) == 0) TORCH_CHECK(false, found->second, ": ", msg);
  TORCH_CHECK(false, source, ": ", msg, found != given_on.end() ? found->second : "");
}

}  // namespace

TrainConfig::TrainConfig() : engine(StrategyOptions::contaccum(128, 8, 1024)) {
  lengths.query_max_length(32).passage_max_length(128);
}

OptionTable<TrainConfig> TrainConfig::fields() { return config_fields(); }

std::vector<std::string> TrainConfig::keys() {
  std::vector<std::string> out;
  for (const auto& f : fields()) out.push_back(f.name);
  return out;
}

TrainConfig TrainConfig::parse(const std::string& yaml, const std::vector<std::string>& overrides,
                               const std::string& source) {
  TrainConfig config;
  const auto table = fields();
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    TORCH_CHECK(false, source, ": not valid YAML: ", e.what());
  }
  TORCH_CHECK(root.IsNull() || root.IsMap(), source, ": a config must be a map of keys to values");
  std::vector<std::pair<std::string, std::string>> entries;
  std::map<std::string, int> lines;
  if (root.IsMap()) flatten(root, "", source, entries, lines);
  // Where each key's value was given, for errors: its line, or --set.
  std::map<std::string, std::string> given_on;
  for (const auto& [key, value] : entries) {
    const auto line = " (line " + std::to_string(lines.at(key)) + ")";
    given_on[key] = line;
    try {
      assign(config, table, key, value, source);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, e.what_without_backtrace(), line);
    }
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    TORCH_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "' must be key=value");
    given_on[o.substr(0, eq)] = "--set " + o;
    assign(config, table, o.substr(0, eq), o.substr(eq + 1), "--set");
  }
  try {
    config.validate();
  } catch (const c10::Error& e) {
    blame(e, source, given_on);
  }
  return config;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  TORCH_CHECK(in.good(), "cannot open config file ", path, ": ", std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), overrides, path);
}

std::string TrainConfig::to_yaml(bool docs) const {
  std::ostringstream out;
  for (const auto& f : fields()) {
    out << f.name << ": " << yaml_text(f.get(*this));
    if (docs && !f.doc.empty()) out << "  # " << f.doc;
    out << "\n";
  }
  return out.str();
}

void TrainConfig::validate() const {
  for (const auto& f : fields()) {
    if (!f.rule) continue;
    const auto value = f.get(*this);
    const auto broken = f.rule(value);
    TORCH_CHECK(broken.empty(), "config key '", f.name, "' ", broken, ", got ", option_value_text(value));
  }
  // The rules between fields, each once.
  model.validate();
  if (strategy != "full_batch") {
    TORCH_CHECK(engine.total_batch() % engine.micro_batch() == 0, "config key 'micro_batch' (", engine.micro_batch(),
                ") must divide total_batch (", engine.total_batch(), ")");
  }
  const bool banks = StrategyOptions::preset_has_banks(strategy) && engine.memory_size() > 0;
  TORCH_CHECK(engine.bank_encoder() == BankEncoder::Current || banks,
              "config key 'bank_encoder' = momentum needs banks (strategy ", strategy, ", memory_size ",
              engine.memory_size(), ")");
  TORCH_CHECK(trainer.staleness_every() == 0 || banks, "config key 'staleness_every' = ", trainer.staleness_every(),
              " needs banks (strategy ", strategy, ", memory_size ", engine.memory_size(), ")");
  // WordPiece inputs hold [CLS], a token and [SEP].
  TORCH_CHECK(lengths.query_max_length() >= 3, "config key 'query_max_length' must be >= 3, got ",
              lengths.query_max_length());
  TORCH_CHECK(lengths.passage_max_length() >= 3, "config key 'passage_max_length' must be >= 3, got ",
              lengths.passage_max_length());
  TORCH_CHECK(trainer.epochs() > 0 || trainer.max_steps() > 0,
              "config key 'epochs' must be > 0 when max_steps is 0, got ", trainer.epochs());
  TORCH_CHECK(trainer.optimizer().fused() || !trainer.optimizer().row_sparse_embeddings(),
              "config key 'row_sparse_embeddings' needs fused_adamw: true (torch::optim::AdamW updates every row)");
}

StrategyOptions TrainConfig::strategy_options() const {
  const auto preset =
      StrategyOptions::from_preset(strategy, engine.total_batch(), engine.micro_batch(), engine.memory_size());
  auto s = engine;
  s.micro_batch(preset.micro_batch())
      .gradients(preset.gradients())
      .negatives(preset.negatives())
      .memory_size(preset.memory_size())
      .staleness_sample(trainer.staleness_every() > 0 ? staleness_sample : 0);
  // The loss scores as the model does (`Strategy` reads it from the model).
  auto loss = s.loss();
  s.loss(loss.similarity(model.similarity()));
  s.validate();
  return s;
}

DenseEvalOptions TrainConfig::dev_eval_options() const {
  auto options = eval;
  options.query_max_length(lengths.query_max_length()).passage_max_length(lengths.passage_max_length());
  return options;
}

}  // namespace contaccum
