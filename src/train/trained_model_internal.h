#pragma once
// Internal: what run_training shares with the model builder. Not installed.

#include "contaccum/text/vocabulary.h"
#include "contaccum/train/train_config.h"

#include <string>

namespace contaccum {
namespace detail {

/// One token per line, as vocab.txt holds them.
std::string vocab_text(const Vocabulary& vocab);

}  // namespace detail
}  // namespace contaccum
