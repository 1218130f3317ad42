#pragma once

#include <cstdint>
#include <functional>

namespace contaccum {

/// The LibTorch operator calls `f` makes on the calling thread, counted with
/// RecordFunction observers (nested calls included: a slice counts itself
/// and the as_strided it calls). Each costs its dispatch whatever the
/// tensors' size, which the small tensors of a micro-batch's banks do not
/// amortise; the tests and benchmarks that hold a code path to its calls
/// count them with this.
int64_t count_operator_calls(const std::function<void()>& f);

}  // namespace contaccum
