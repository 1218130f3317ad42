#include "contaccum/train/train_config.h"

#include "contaccum/core/option_table.h"
#include "contaccum/strategy/strategy.h"

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

namespace contaccum {
namespace {

// A key of the chosen encoder's options (`TrainConfig::encoder_options`).
struct EncoderKey {
  std::string key;
};

using Field = std::variant<std::string TrainConfig::*, int64_t TrainConfig::*, double TrainConfig::*,
                           bool TrainConfig::*, EncoderKey>;

struct Key {
  std::string name;
  Field field;
};

// The keys of TrainConfig's own fields; the encoders' keys are added from
// the registry after "encoder_options.tied_init".
const std::vector<Key>& fixed_keys() {
  static const std::vector<Key> table = {
      {"data.corpus", &TrainConfig::data_corpus},
      {"data.queries", &TrainConfig::data_queries},
      {"data.train_qrels", &TrainConfig::data_train_qrels},
      {"data.hard_negatives", &TrainConfig::data_hard_negatives},
      {"data.dev_qrels", &TrainConfig::data_dev_qrels},
      {"data.skip_bad_records", &TrainConfig::data_skip_bad_records},
      {"data.dev_max_queries", &TrainConfig::data_dev_max_queries},
      {"strategy", &TrainConfig::strategy},
      {"total_batch", &TrainConfig::total_batch},
      {"micro_batch", &TrainConfig::micro_batch},
      {"memory_size", &TrainConfig::memory_size},
      {"query_bank", &TrainConfig::query_bank},
      {"passage_bank", &TrainConfig::passage_bank},
      {"bank_hard_negatives", &TrainConfig::bank_hard_negatives},
      {"clear_banks_after_step", &TrainConfig::clear_banks_after_step},
      {"bank_encoder", &TrainConfig::bank_encoder},
      {"momentum", &TrainConfig::momentum},
      {"hard_negatives", &TrainConfig::hard_negatives},
      {"similarity", &TrainConfig::similarity},
      {"temperature", &TrainConfig::temperature},
      {"tiled_loss", &TrainConfig::tiled_loss},
      {"encoder", &TrainConfig::encoder},
      {"encoder_options.shared", &TrainConfig::encoder_shared},
      {"encoder_options.tied_init", &TrainConfig::encoder_tied_init},
      {"tokenizer.vocab", &TrainConfig::tokenizer_vocab},
      {"tokenizer.vocab_size", &TrainConfig::tokenizer_vocab_size},
      {"tokenizer.lower_case", &TrainConfig::tokenizer_lower_case},
      {"query_max_length", &TrainConfig::query_max_length},
      {"passage_max_length", &TrainConfig::passage_max_length},
      {"epochs", &TrainConfig::epochs},
      {"max_steps", &TrainConfig::max_steps},
      {"lr", &TrainConfig::lr},
      {"weight_decay", &TrainConfig::weight_decay},
      {"fused_adamw", &TrainConfig::fused_adamw},
      {"row_sparse_embeddings", &TrainConfig::row_sparse_embeddings},
      {"final_lr_ratio", &TrainConfig::final_lr_ratio},
      {"warmup_steps", &TrainConfig::warmup_steps},
      {"max_grad_norm", &TrainConfig::max_grad_norm},
      {"non_finite", &TrainConfig::non_finite},
      {"max_consecutive_skips", &TrainConfig::max_consecutive_skips},
      {"seed", &TrainConfig::seed},
      {"threads", &TrainConfig::threads},
      {"distributed.backend", &TrainConfig::distributed_backend},
      {"distributed.timeout", &TrainConfig::distributed_timeout},
      {"log_every", &TrainConfig::log_every},
      {"eval_every", &TrainConfig::eval_every},
      {"eval_metric", &TrainConfig::eval_metric},
      {"eval_batch_size", &TrainConfig::eval_batch_size},
      {"checkpoint_every", &TrainConfig::checkpoint_every},
      {"keep_checkpoints", &TrainConfig::keep_checkpoints},
      {"staleness_every", &TrainConfig::staleness_every},
      {"count_allocations", &TrainConfig::count_allocations},
      {"staleness_sample", &TrainConfig::staleness_sample},
  };
  return table;
}

// The one table of keys: parsing, printing and `keys()` all read it.
std::vector<Key> key_table() {
  std::vector<Key> table;
  for (const auto& k : fixed_keys()) {
    table.push_back(k);
    if (k.name == "encoder_options.tied_init") {
      for (const auto& spec : EncoderRegistry::global().options()) {
        table.push_back({"encoder_options." + spec.key, EncoderKey{spec.key}});
      }
    }
  }
  return table;
}

std::optional<Key> find_key(const std::string& name) {
  for (auto& k : key_table()) {
    if (name == k.name) return k;
  }
  return std::nullopt;
}

// Parses a YAML scalar as T; false when it is not one (or not finite).
template <typename T>
bool parse_scalar(const std::string& value, T& out) {
  try {
    out = YAML::Load(value).as<T>();
  } catch (const YAML::Exception&) {
    return false;
  }
  if constexpr (std::is_same_v<T, double>) return std::isfinite(out);
  return true;
}

template <typename T>
const char* type_words() {
  return std::is_same_v<T, bool> ? "true or false" : std::is_same_v<T, double> ? "a finite number" : "an integer";
}

// An encoder option's value, typed as its default is.
void assign_encoder_option(TrainConfig& config, const EncoderKey& k, const std::string& name, const std::string& value,
                           const std::string& source) {
  const auto type = config.encoder_options.values().at(k.key);
  std::visit(
      [&](const auto& like) {
        using T = std::decay_t<decltype(like)>;
        if constexpr (std::is_same_v<T, std::string>) {
          config.encoder_options.set(k.key, value);
        } else {
          T parsed{};
          TORCH_CHECK(parse_scalar(value, parsed), source, ": config key '", name, "' must be ", type_words<T>(),
                      ", got '", value, "'");
          config.encoder_options.set(k.key, parsed);
        }
      },
      type);
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

void assign(TrainConfig& config, const std::string& key, const std::string& value, const std::string& source) {
  const auto k = find_key(key);
  TORCH_CHECK(k.has_value(), source, ": unknown config key '", key, "' (see `contaccum train --list-keys`)");
  std::visit(
      [&](auto member) {
        if constexpr (std::is_same_v<decltype(member), EncoderKey>) {
          assign_encoder_option(config, member, key, value, source);
        } else {
          using T = std::decay_t<decltype(config.*member)>;
          if constexpr (std::is_same_v<T, std::string>) {
            config.*member = value;
          } else {
            T parsed{};
            TORCH_CHECK(parse_scalar(value, parsed), source, ": config key '", key, "' must be ", type_words<T>(),
                        ", got '", value, "'");
            config.*member = parsed;
          }
        }
      },
      k->field);
}

// A value as to_yaml prints it.
template <typename T>
void print_value(std::ostream& out, const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << v;
    out << e.c_str();
  } else {
    // The shortest form that reads back exactly (0.1, not 0.10000000000000001).
    out << option_value_text(v);
  }
}

void check_choice(const std::string& key, const std::string& value, const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices) {
    if (value == c) return;
    list += (list.empty() ? "" : ", ") + c;
  }
  TORCH_CHECK(false, "config key '", key, "' must be one of ", list, "; got '", value, "'");
}

// Every registered encoder's keys in range (a key's own check), then the
// chosen encoder's own checks.
void validate_encoder_options(const std::string& encoder, const EncoderSettings& settings) {
  const auto& registry = EncoderRegistry::global();
  const auto& chosen = registry.at(encoder);  // throws listing the names
  for (const auto& spec : registry.options()) {
    if (!spec.check) continue;
    const auto problem = spec.check(settings.values().at(spec.key));
    TORCH_CHECK(problem.empty(), "config key '", settings.name_of(spec.key), "' ", problem);
  }
  if (chosen.validate) chosen.validate(settings);
}

}  // namespace

std::vector<std::string> TrainConfig::keys() {
  std::vector<std::string> out;
  for (const auto& k : key_table()) out.push_back(k.name);
  return out;
}

TrainConfig TrainConfig::parse(const std::string& yaml, const std::vector<std::string>& overrides,
                               const std::string& source) {
  TrainConfig config;
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
      assign(config, key, value, source);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, e.what_without_backtrace(), line);
    }
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    TORCH_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "' must be key=value");
    given_on[o.substr(0, eq)] = "--set " + o;
    assign(config, o.substr(0, eq), o.substr(eq + 1), "--set");
  }
  try {
    config.validate();
  } catch (const c10::Error& e) {
    // A range error names its key: say where that key's value was given.
    const std::string msg = e.what_without_backtrace();
    const auto open = msg.find("config key '");
    const auto begin = open == std::string::npos ? open : open + 12;
    const auto end = begin == std::string::npos ? begin : msg.find('\'', begin);
    const auto found = end == std::string::npos ? given_on.end() : given_on.find(msg.substr(begin, end - begin));
    if (found != given_on.end() && found->second.rfind("--set", 0) == 0) TORCH_CHECK(false, found->second, ": ", msg);
    TORCH_CHECK(false, source, ": ", msg, found != given_on.end() ? found->second : "");
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

std::string TrainConfig::to_yaml() const {
  std::ostringstream out;
  for (const auto& k : key_table()) {
    out << k.name << ": ";
    std::visit(
        [&](auto member) {
          if constexpr (std::is_same_v<decltype(member), EncoderKey>) {
            std::visit([&](const auto& v) { print_value(out, v); }, encoder_options.values().at(member.key));
          } else {
            print_value(out, this->*member);
          }
        },
        k.field);
    out << "\n";
  }
  return out.str();
}

void TrainConfig::validate() const {
  check_choice("strategy", strategy, StrategyOptions::preset_names());
  check_choice("similarity", similarity, {"dot", "cosine"});
  validate_encoder_options(encoder, encoder_options);
  auto positive = [](const char* key, int64_t v) { TORCH_CHECK(v > 0, "config key '", key, "' must be > 0, got ", v); };
  auto non_negative = [](const char* key, int64_t v) {
    TORCH_CHECK(v >= 0, "config key '", key, "' must be >= 0, got ", v);
  };
  positive("total_batch", total_batch);
  positive("micro_batch", micro_batch);
  if (strategy != "full_batch") {
    TORCH_CHECK(total_batch % micro_batch == 0, "config key 'micro_batch' (", micro_batch,
                ") must divide total_batch (", total_batch, ")");
  }
  non_negative("memory_size", memory_size);
  check_choice("bank_encoder", bank_encoder, {"current", "momentum"});
  TORCH_CHECK(momentum >= 0 && momentum < 1, "config key 'momentum' must be in [0, 1), got ", momentum);
  const bool banks = StrategyOptions::preset_has_banks(strategy) && memory_size > 0;
  TORCH_CHECK(bank_encoder == "current" || banks, "config key 'bank_encoder' = momentum needs banks (strategy ",
              strategy, ", memory_size ", memory_size, ")");
  non_negative("staleness_every", staleness_every);
  positive("staleness_sample", staleness_sample);
  TORCH_CHECK(staleness_every == 0 || banks, "config key 'staleness_every' = ", staleness_every,
              " needs banks (strategy ", strategy, ", memory_size ", memory_size, ")");
  non_negative("hard_negatives", hard_negatives);
  TORCH_CHECK(temperature > 0, "config key 'temperature' must be > 0, got ", temperature);
  TORCH_CHECK(tokenizer_vocab_size >= 100, "config key 'tokenizer.vocab_size' must be >= 100, got ",
              tokenizer_vocab_size);
  TORCH_CHECK(query_max_length >= 3, "config key 'query_max_length' must be >= 3, got ", query_max_length);
  TORCH_CHECK(passage_max_length >= 3, "config key 'passage_max_length' must be >= 3, got ", passage_max_length);
  non_negative("epochs", epochs);
  non_negative("max_steps", max_steps);
  TORCH_CHECK(epochs > 0 || max_steps > 0, "config key 'epochs' must be > 0 when max_steps is 0, got ", epochs);
  TORCH_CHECK(lr > 0, "config key 'lr' must be > 0, got ", lr);
  TORCH_CHECK(weight_decay >= 0, "config key 'weight_decay' must be >= 0, got ", weight_decay);
  TORCH_CHECK(fused_adamw || !row_sparse_embeddings,
              "config key 'row_sparse_embeddings' needs fused_adamw: true (torch::optim::AdamW updates every row)");
  TORCH_CHECK(final_lr_ratio >= 0 && final_lr_ratio <= 1, "config key 'final_lr_ratio' must be in [0, 1], got ",
              final_lr_ratio);
  TORCH_CHECK(max_grad_norm >= 0, "config key 'max_grad_norm' must be >= 0 (0 disables clipping), got ", max_grad_norm);
  check_choice("non_finite", non_finite, {"error", "skip"});
  positive("max_consecutive_skips", max_consecutive_skips);
  non_negative("warmup_steps", warmup_steps);
  non_negative("seed", seed);
  non_negative("threads", threads);
  check_choice("distributed.backend", distributed_backend, {"auto", "gloo", "nccl"});
  TORCH_CHECK(distributed_timeout > 0, "config key 'distributed.timeout' must be > 0 seconds, got ",
              distributed_timeout);
  positive("log_every", log_every);
  non_negative("eval_every", eval_every);
  positive("eval_batch_size", eval_batch_size);
  non_negative("checkpoint_every", checkpoint_every);
  positive("keep_checkpoints", keep_checkpoints);
  non_negative("data.dev_max_queries", data_dev_max_queries);
  check_choice("eval_metric", eval_metric,
               {"top@1", "top@5", "top@20", "top@100", "recall@20", "recall@100", "mrr@10", "ndcg@10", "map@100"});
}

}  // namespace contaccum
