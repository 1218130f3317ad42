#pragma once

#include "contaccum/core/option_table.h"

#include <string>
#include <utility>
#include <vector>

namespace contaccum {

/// How a query and a passage are scored. A model owns it
/// (`DualEncoderOptions::similarity`); the loss, the score cache, evaluation,
/// embeddings and indexes read it from there.
enum class Similarity {
  /// Inner product (DPR).
  Dot,
  /// Cosine of the angle: inner product of L2-normalised vectors.
  Cosine,
};

/// "dot", "cosine".
template <>
const std::vector<std::pair<Similarity, std::string>>& enum_names<Similarity>();

}  // namespace contaccum
