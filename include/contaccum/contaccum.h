#pragma once

/// Umbrella header: everything contaccum offers.

#include "contaccum/data/training_batch.h"
#include "contaccum/encoders/bag_of_embeddings.h"
#include "contaccum/encoders/encoder.h"
#include "contaccum/loss/info_nce.h"
#include "contaccum/memory/memory_bank.h"
#include "contaccum/model/dual_encoder.h"
#include "contaccum/strategy/rng_state.h"
#include "contaccum/strategy/strategy.h"
#include "contaccum/version.h"
