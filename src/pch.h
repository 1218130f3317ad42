#pragma once
// Precompiled for every library and test source: LibTorch's headers dominate
// compile time.
#include <torch/torch.h>
