#include "contaccum/strategy/strategy.h"

namespace contaccum {

StrategyOptions StrategyOptions::full_batch(int64_t total_batch) {
  return StrategyOptions(total_batch, total_batch).negatives(NegativeScope::TotalBatch);
}

StrategyOptions StrategyOptions::grad_accum(int64_t total_batch, int64_t micro_batch) {
  return StrategyOptions(total_batch, micro_batch);
}

StrategyOptions StrategyOptions::grad_cache(int64_t total_batch, int64_t micro_batch) {
  return StrategyOptions(total_batch, micro_batch).gradients(GradientMode::Cached).negatives(NegativeScope::TotalBatch);
}

StrategyOptions StrategyOptions::contaccum(int64_t total_batch, int64_t micro_batch, int64_t memory_size) {
  return StrategyOptions(total_batch, micro_batch).memory_size(memory_size);
}

StrategyOptions StrategyOptions::contaccum_grad_cache(int64_t total_batch, int64_t micro_batch, int64_t memory_size) {
  return grad_cache(total_batch, micro_batch).memory_size(memory_size);
}

const std::vector<std::string>& StrategyOptions::preset_names() {
  static const std::vector<std::string> names = {"full_batch", "grad_accum", "grad_cache", "contaccum",
                                                 "contaccum_grad_cache"};
  return names;
}

bool StrategyOptions::preset_has_banks(const std::string& name) {
  return name == "contaccum" || name == "contaccum_grad_cache";
}

StrategyOptions StrategyOptions::from_preset(const std::string& name, int64_t total_batch, int64_t micro_batch,
                                             int64_t memory_size) {
  if (name == "full_batch") return full_batch(total_batch);
  if (name == "grad_accum") return grad_accum(total_batch, micro_batch);
  if (name == "grad_cache") return grad_cache(total_batch, micro_batch);
  if (name == "contaccum") return contaccum(total_batch, micro_batch, memory_size);
  if (name == "contaccum_grad_cache") return contaccum_grad_cache(total_batch, micro_batch, memory_size);
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  TORCH_CHECK(false, "StrategyOptions::from_preset: the strategy must be one of ", list, "; got '", name, "'");
}

template <>
const std::vector<std::pair<GradientMode, std::string>>& enum_names<GradientMode>() {
  static const std::vector<std::pair<GradientMode, std::string>> names = {{GradientMode::Direct, "direct"},
                                                                          {GradientMode::Cached, "cached"}};
  return names;
}

template <>
const std::vector<std::pair<NegativeScope, std::string>>& enum_names<NegativeScope>() {
  static const std::vector<std::pair<NegativeScope, std::string>> names = {{NegativeScope::MicroBatch, "micro_batch"},
                                                                           {NegativeScope::TotalBatch, "total_batch"}};
  return names;
}

template <>
const std::vector<std::pair<BankEncoder, std::string>>& enum_names<BankEncoder>() {
  static const std::vector<std::pair<BankEncoder, std::string>> names = {{BankEncoder::Current, "current"},
                                                                         {BankEncoder::Momentum, "momentum"}};
  return names;
}

const OptionTable<StrategyOptions>& StrategyOptions::fields() {
  static const OptionTable<StrategyOptions> table = [] {
    using O = StrategyOptions;
    OptionTable<O> t = {
        option_field<O>("total_batch", "examples per optimizer step", CONTACCUM_OPTION_ACCESSORS(total_batch),
                        greater_than(0)),
        option_field<O>("micro_batch", "examples per micro-batch", CONTACCUM_OPTION_ACCESSORS(micro_batch),
                        greater_than(0)),
        option_field<O>("gradients", "how representations get their gradients: direct or cached",
                        CONTACCUM_OPTION_ACCESSORS(gradients)),
        option_field<O>("negatives", "the in-batch negatives a row sees: micro_batch or total_batch",
                        CONTACCUM_OPTION_ACCESSORS(negatives)),
        option_field<O>("memory_size", "examples each memory bank keeps", CONTACCUM_OPTION_ACCESSORS(memory_size),
                        at_least(0)),
        option_field<O>("query_bank", "banked queries are extra rows", CONTACCUM_OPTION_ACCESSORS(query_bank)),
        option_field<O>("passage_bank", "banked passages are extra negative columns",
                        CONTACCUM_OPTION_ACCESSORS(passage_bank)),
        option_field<O>("bank_hard_negatives", "bank the hard negatives with the positives",
                        CONTACCUM_OPTION_ACCESSORS(bank_hard_negatives)),
        option_field<O>("clear_banks_after_step", "empty the banks after every step",
                        CONTACCUM_OPTION_ACCESSORS(clear_banks_after_step)),
        // Which batches exist is the trainer's (its step count), not the engine's.
        option_field<O>("allow_partial_batch", "accept a batch smaller than total_batch",
                        CONTACCUM_OPTION_ACCESSORS(allow_partial_batch), {}, /*changes_results=*/false),
        option_field<O>("bank_encoder", "where banked representations come from: current or momentum",
                        CONTACCUM_OPTION_ACCESSORS(bank_encoder)),
        option_field<O>("momentum", "the moving average's momentum with bank_encoder momentum",
                        CONTACCUM_OPTION_ACCESSORS(momentum), in_half_open_range(0, 1)),
        option_field<O>("staleness_sample", "banked examples kept for staleness measurements",
                        CONTACCUM_OPTION_ACCESSORS(staleness_sample), at_least(0), /*changes_results=*/false),
        option_field<O>("precision", "the towers' compute type under autocast: fp32, bf16 or fp16",
                        CONTACCUM_OPTION_ACCESSORS(precision)),
        option_field<O>("bank_dtype", "the type the memory banks store: fp32, bf16 or fp16",
                        CONTACCUM_OPTION_ACCESSORS(bank_dtype)),
        option_field<O>("mask_false_negatives", "never score a query's positive passages as its negatives",
                        CONTACCUM_OPTION_ACCESSORS(mask_false_negatives)),
        option_field<O>("overlap_gather", "encode the next loss group while the last one's gather is in flight",
                        CONTACCUM_OPTION_ACCESSORS(overlap_gather), {}, /*changes_results=*/false),
    };
    append_nested_fields(
        t, "loss.", InfoNCEOptions::fields(), [](const O& o) { return o.loss(); },
        [](O& o, const InfoNCEOptions& loss) { o.loss(loss); });
    return t;
  }();
  return table;
}

std::string StrategyOptions::fingerprint() const { return option_fingerprint(*this, fields()); }

void StrategyOptions::validate() const {
  check_option_fields(*this, fields(), "StrategyOptions");
  // Rules between fields.
  TORCH_CHECK(micro_batch() <= total_batch(), "StrategyOptions::micro_batch (", micro_batch(),
              ") must be <= total_batch (", total_batch(), ")");
  TORCH_CHECK(total_batch() % micro_batch() == 0, "StrategyOptions::micro_batch (", micro_batch(),
              ") must divide total_batch (", total_batch(), ")");
  TORCH_CHECK(memory_size() == 0 || query_bank() || passage_bank(), "StrategyOptions::memory_size = ", memory_size(),
              " needs query_bank or passage_bank on (both are off)");
  TORCH_CHECK(bank_encoder() == BankEncoder::Current || memory_size() > 0,
              "StrategyOptions::bank_encoder = momentum needs banks (memory_size > 0, got ", memory_size(), ")");
}

}  // namespace contaccum
