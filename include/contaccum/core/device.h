#pragma once

#include "contaccum/core/option_table.h"

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace contaccum {

/// The device a `device` setting names (config key `device`, `--device`):
/// `cpu`; `cuda` (this process's GPU: `cuda:<local_rank>`, so that worker r
/// of `--nproc-per-node` uses GPU r); `cuda:N`; or `auto`: as `cuda` when
/// LibTorch has CUDA and a GPU is visible, else the CPU. Throws naming the
/// value when it is malformed, when CUDA is asked for and not there, or when
/// the GPU does not exist.
torch::Device resolve_device(const std::string& spec, int64_t local_rank = 0);

/// The rule of a `device` setting's text (`auto`, `cpu`, `cuda`, `cuda:N`),
/// for option tables: what it checks is the spelling, not the machine.
OptionRule device_spec();

}  // namespace contaccum
