#pragma once
// Internal: the trainer's part of a checkpoint, as named fields with a format
// version. Not installed.

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdint>
#include <map>
#include <string>

namespace contaccum {
namespace detail {

/// The format `write_trainer_state` writes. 1: the positional tensor of
/// contaccum 0.1 before named fields (still read).
constexpr int64_t kTrainerStateFormat = 2;

/// Integer fields by name (step, sampler position, what defines the run).
using TrainerFields = std::map<std::string, int64_t>;

/// Writes `fields` and `best_metric` under "state" with the format version.
void write_trainer_state(torch::serialize::OutputArchive& archive, const TrainerFields& fields, double best_metric);

/// What a checkpoint holds: its fields (a format-1 checkpoint has only step,
/// total_steps, epoch, batch, best_step, total_batch, micro_batch,
/// memory_size, hard_negatives, and the skip counts when it has them).
struct SavedTrainerState {
  int64_t format = 0;
  TrainerFields fields;
  double best_metric = 0.0;
};

/// Reads either format; throws when the archive holds neither, or a format
/// newer than this build reads.
SavedTrainerState read_trainer_state(torch::serialize::InputArchive& archive);

/// Throws naming the first field of `run` (what defines the run loading the
/// checkpoint) that the checkpoint holds with another value, both values in
/// words. Fields the checkpoint lacks (format 1) are not compared.
void check_same_run(const SavedTrainerState& saved, const TrainerFields& run);

}  // namespace detail
}  // namespace contaccum
