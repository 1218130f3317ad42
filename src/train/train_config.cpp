#include "contaccum/train/train_config.h"

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <variant>

namespace contaccum {
namespace {

using Field =
    std::variant<std::string TrainConfig::*, int64_t TrainConfig::*, double TrainConfig::*, bool TrainConfig::*>;

struct Key {
  const char* name;
  Field field;
};

// The one table of keys: parsing, printing and `keys()` all read it.
const std::vector<Key>& key_table() {
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
      {"hard_negatives", &TrainConfig::hard_negatives},
      {"similarity", &TrainConfig::similarity},
      {"temperature", &TrainConfig::temperature},
      {"encoder", &TrainConfig::encoder},
      {"encoder_options.shared", &TrainConfig::encoder_shared},
      {"encoder_options.tied_init", &TrainConfig::encoder_tied_init},
      {"encoder_options.dim", &TrainConfig::encoder_dim},
      {"encoder_options.embedding_dim", &TrainConfig::encoder_embedding_dim},
      {"encoder_options.dropout", &TrainConfig::encoder_dropout},
      {"encoder_options.hidden_size", &TrainConfig::encoder_hidden_size},
      {"encoder_options.layers", &TrainConfig::encoder_layers},
      {"encoder_options.heads", &TrainConfig::encoder_heads},
      {"encoder_options.intermediate_size", &TrainConfig::encoder_intermediate_size},
      {"encoder_options.pooling", &TrainConfig::encoder_pooling},
      {"encoder_options.pretrained", &TrainConfig::encoder_pretrained},
      {"tokenizer.vocab", &TrainConfig::tokenizer_vocab},
      {"tokenizer.vocab_size", &TrainConfig::tokenizer_vocab_size},
      {"tokenizer.lower_case", &TrainConfig::tokenizer_lower_case},
      {"query_max_length", &TrainConfig::query_max_length},
      {"passage_max_length", &TrainConfig::passage_max_length},
      {"epochs", &TrainConfig::epochs},
      {"max_steps", &TrainConfig::max_steps},
      {"lr", &TrainConfig::lr},
      {"weight_decay", &TrainConfig::weight_decay},
      {"warmup_steps", &TrainConfig::warmup_steps},
      {"max_grad_norm", &TrainConfig::max_grad_norm},
      {"non_finite", &TrainConfig::non_finite},
      {"max_consecutive_skips", &TrainConfig::max_consecutive_skips},
      {"seed", &TrainConfig::seed},
      {"threads", &TrainConfig::threads},
      {"log_every", &TrainConfig::log_every},
      {"eval_every", &TrainConfig::eval_every},
      {"eval_metric", &TrainConfig::eval_metric},
      {"eval_batch_size", &TrainConfig::eval_batch_size},
      {"checkpoint_every", &TrainConfig::checkpoint_every},
      {"keep_checkpoints", &TrainConfig::keep_checkpoints},
  };
  return table;
}

const Key* find_key(const std::string& name) {
  for (const auto& k : key_table()) {
    if (name == k.name) return &k;
  }
  return nullptr;
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
  const Key* k = find_key(key);
  TORCH_CHECK(k != nullptr, source, ": unknown config key '", key, "' (see `contaccum train --list-keys`)");
  std::visit(
      [&](auto member) {
        using T = std::decay_t<decltype(config.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          config.*member = value;
        } else {
          T parsed{};
          bool ok = false;
          try {
            parsed = YAML::Load(value).as<T>();
            ok = true;
          } catch (const YAML::Exception&) {
          }
          if constexpr (std::is_same_v<T, double>) ok = ok && std::isfinite(parsed);
          const char* type = std::is_same_v<T, bool>     ? "true or false"
                             : std::is_same_v<T, double> ? "a finite number"
                                                         : "an integer";
          TORCH_CHECK(ok, source, ": config key '", key, "' must be ", type, ", got '", value, "'");
          config.*member = parsed;
        }
      },
      k->field);
}

std::string quoted(const std::string& s) {
  YAML::Emitter e;
  e << YAML::DoubleQuoted << s;
  return e.c_str();
}

void check_choice(const std::string& key, const std::string& value, std::initializer_list<const char*> choices) {
  std::string list;
  for (const char* c : choices) {
    if (value == c) return;
    list += list.empty() ? c : std::string(", ") + c;
  }
  TORCH_CHECK(false, "config key '", key, "' must be one of ", list, "; got '", value, "'");
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
  if (root.IsMap()) {
    std::map<std::string, int> lines;
    flatten(root, "", source, entries, lines);
  }
  for (const auto& [key, value] : entries) assign(config, key, value, source);
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    TORCH_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "' must be key=value");
    assign(config, o.substr(0, eq), o.substr(eq + 1), "--set");
  }
  config.validate();
  return config;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  TORCH_CHECK(in.good(), "cannot open config file ", path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse(text.str(), overrides, path);
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    // Range errors from validate() do not know the file; say it.
    if (msg.rfind(path, 0) == 0 || msg.rfind("--set", 0) == 0) throw;
    TORCH_CHECK(false, path, ": ", msg);
  }
}

std::string TrainConfig::to_yaml() const {
  std::ostringstream out;
  out.precision(17);
  for (const auto& k : key_table()) {
    out << k.name << ": ";
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(this->*member)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out << quoted(this->*member);
          } else if constexpr (std::is_same_v<T, bool>) {
            out << (this->*member ? "true" : "false");
          } else {
            out << this->*member;
          }
        },
        k.field);
    out << "\n";
  }
  return out.str();
}

void TrainConfig::validate() const {
  check_choice("strategy", strategy, {"full_batch", "grad_accum", "grad_cache", "contaccum", "contaccum_grad_cache"});
  check_choice("similarity", similarity, {"dot", "cosine"});
  check_choice("encoder", encoder, {"bag_of_embeddings", "transformer"});
  if (!encoder_pooling.empty()) {
    if (encoder == "transformer") {
      check_choice("encoder_options.pooling", encoder_pooling, {"cls", "mean"});
    } else {
      check_choice("encoder_options.pooling", encoder_pooling, {"mean", "attention"});
    }
  }
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
  non_negative("hard_negatives", hard_negatives);
  TORCH_CHECK(temperature > 0, "config key 'temperature' must be > 0, got ", temperature);
  positive("encoder_options.dim", encoder_dim);
  positive("encoder_options.embedding_dim", encoder_embedding_dim);
  TORCH_CHECK(encoder_dropout >= 0 && encoder_dropout < 1,
              "config key 'encoder_options.dropout' must be in [0, 1), got ", encoder_dropout);
  positive("encoder_options.hidden_size", encoder_hidden_size);
  positive("encoder_options.layers", encoder_layers);
  positive("encoder_options.heads", encoder_heads);
  TORCH_CHECK(encoder_hidden_size % encoder_heads == 0, "config key 'encoder_options.heads' (", encoder_heads,
              ") must divide encoder_options.hidden_size (", encoder_hidden_size, ")");
  positive("encoder_options.intermediate_size", encoder_intermediate_size);
  TORCH_CHECK(tokenizer_vocab_size >= 100, "config key 'tokenizer.vocab_size' must be >= 100, got ",
              tokenizer_vocab_size);
  TORCH_CHECK(query_max_length >= 3, "config key 'query_max_length' must be >= 3, got ", query_max_length);
  TORCH_CHECK(passage_max_length >= 3, "config key 'passage_max_length' must be >= 3, got ", passage_max_length);
  non_negative("epochs", epochs);
  non_negative("max_steps", max_steps);
  TORCH_CHECK(epochs > 0 || max_steps > 0, "config key 'epochs' must be > 0 when max_steps is 0, got ", epochs);
  TORCH_CHECK(lr > 0, "config key 'lr' must be > 0, got ", lr);
  TORCH_CHECK(weight_decay >= 0, "config key 'weight_decay' must be >= 0, got ", weight_decay);
  TORCH_CHECK(max_grad_norm >= 0, "config key 'max_grad_norm' must be >= 0 (0 disables clipping), got ", max_grad_norm);
  check_choice("non_finite", non_finite, {"error", "skip"});
  positive("max_consecutive_skips", max_consecutive_skips);
  non_negative("warmup_steps", warmup_steps);
  non_negative("seed", seed);
  non_negative("threads", threads);
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
