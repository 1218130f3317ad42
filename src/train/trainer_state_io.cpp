#include "trainer_state_io.h"

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <algorithm>
#include <iterator>

namespace contaccum {
namespace detail {
namespace {

// The positional tensor of format 1, in its order.
const char* const kFormat1Fields[] = {"step",        "total_steps", "epoch",       "batch",         "best_step",
                                      "total_batch", "micro_batch", "memory_size", "hard_negatives"};

// A field's value as the config spells it.
std::string value_text(const std::string& key, int64_t v) {
  if (key == "gradients") return v == 0 ? "direct" : v == 1 ? "cached (GradCache)" : std::to_string(v);
  if (key == "negatives") return v == 0 ? "micro-batch" : v == 1 ? "total-batch" : std::to_string(v);
  if (key == "bank_encoder") return v == 0 ? "current" : v == 1 ? "momentum" : std::to_string(v);
  if (key == "query_bank" || key == "passage_bank" || key == "bank_hard_negatives" || key == "clear_banks_after_step") {
    return v ? "true" : "false";
  }
  return std::to_string(v);
}

int64_t scalar(const torch::Tensor& t, const std::string& key) {
  TORCH_CHECK(t.numel() == 1 && !t.is_floating_point(), "the checkpoint's trainer field '", key,
              "' is not an integer scalar");
  return t.item<int64_t>();
}

// Every field format 2 writes; a reader knows no others.
const char* const kFields[] = {"step",          "total_steps",         "epoch",
                               "batch",         "best_step",           "total_batch",
                               "micro_batch",   "memory_size",         "hard_negatives",
                               "gradients",     "negatives",           "query_bank",
                               "passage_bank",  "bank_hard_negatives", "clear_banks_after_step",
                               "skipped_steps", "consecutive_skips"};
// Fields added since format 2 came out: absent from older checkpoints.
// world_size: absent means 1; bank_encoder: absent means current.
const char* const kOptionalFields[] = {"world_size", "bank_encoder"};

bool known_field(const std::string& key) {
  return std::find(std::begin(kFields), std::end(kFields), key) != std::end(kFields) ||
         std::find(std::begin(kOptionalFields), std::end(kOptionalFields), key) != std::end(kOptionalFields);
}

}  // namespace

void write_trainer_state(torch::serialize::OutputArchive& archive, const TrainerFields& fields, double best_metric) {
  torch::serialize::OutputArchive state;
  state.write("format", torch::tensor(kTrainerStateFormat, torch::kLong));
  for (const auto& [key, value] : fields) {
    TORCH_CHECK(known_field(key), "write_trainer_state: unknown field '", key, "'");
    state.write(key, torch::tensor(value, torch::kLong));
  }
  state.write("best_metric", torch::tensor(best_metric, torch::kDouble));
  archive.write("state", state);
}

SavedTrainerState read_trainer_state(torch::serialize::InputArchive& archive) {
  SavedTrainerState out;
  torch::serialize::InputArchive state;
  if (archive.try_read("state", state)) {
    torch::Tensor t;
    TORCH_CHECK(state.try_read("format", t), "not a contaccum trainer checkpoint (no format version)");
    out.format = scalar(t, "format");
    TORCH_CHECK(out.format >= 2 && out.format <= kTrainerStateFormat, "the checkpoint has trainer format ", out.format,
                "; this contaccum reads formats 1 to ", kTrainerStateFormat, " (a checkpoint of a newer contaccum?)");
    for (const char* key : kFields) {
      if (state.try_read(key, t)) out.fields[key] = scalar(t, key);
    }
    for (const char* key : kOptionalFields) {
      if (state.try_read(key, t)) out.fields[key] = scalar(t, key);
    }
    TORCH_CHECK(state.try_read("best_metric", t) && t.numel() == 1, "the checkpoint has no best_metric");
    out.best_metric = t.item<double>();
    for (const char* key : kFields) {
      TORCH_CHECK(out.fields.count(key), "the checkpoint's trainer state has no field '", key, "'");
    }
    return out;
  }
  torch::Tensor t, best, skips;
  TORCH_CHECK(archive.try_read("trainer", t) && t.numel() == 9 && archive.try_read("best_metric", best),
              "not a contaccum trainer checkpoint");
  out.format = 1;
  for (int i = 0; i < 9; ++i) out.fields[kFormat1Fields[i]] = t[i].item<int64_t>();
  out.best_metric = best.item<double>();
  const bool counted = archive.try_read("skips", skips) && skips.numel() == 2;
  out.fields["skipped_steps"] = counted ? skips[0].item<int64_t>() : 0;
  out.fields["consecutive_skips"] = counted ? skips[1].item<int64_t>() : 0;
  return out;
}

void check_same_run(const SavedTrainerState& saved, const TrainerFields& run) {
  for (const auto& [key, value] : run) {
    const auto it = saved.fields.find(key);
    if (it == saved.fields.end()) continue;
    if (key == "total_steps") {
      TORCH_CHECK(it->second == value, "the checkpoint belongs to a run of ", it->second, " steps, this one has ",
                  value, " (epochs/max_steps/total_batch differ)");
      continue;
    }
    TORCH_CHECK(it->second == value, "the checkpoint belongs to a run with ", key, " = ", value_text(key, it->second),
                ", this one has ", value_text(key, value), "; resume with the run's own options, or start a new run");
  }
}

}  // namespace detail
}  // namespace contaccum
