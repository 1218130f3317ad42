#pragma once

/// Umbrella header: everything contaccum offers.

#include "contaccum/data/batch_loader.h"
#include "contaccum/data/collator.h"
#include "contaccum/data/prefetcher.h"
#include "contaccum/data/reader_options.h"
#include "contaccum/data/readers.h"
#include "contaccum/data/sampler.h"
#include "contaccum/data/text_table.h"
#include "contaccum/data/training_batch.h"
#include "contaccum/data/training_set.h"
#include "contaccum/encoders/bag_of_embeddings.h"
#include "contaccum/encoders/encoder.h"
#include "contaccum/encoders/torchscript.h"
#include "contaccum/encoders/transformer.h"
#include "contaccum/io/safetensors.h"
#include "contaccum/loss/info_nce.h"
#include "contaccum/memory/memory_bank.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/strategy/rng_state.h"
#include "contaccum/strategy/strategy.h"
#include "contaccum/version.h"
