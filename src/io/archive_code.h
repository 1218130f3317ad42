#pragma once
// Internal: what the code records of a LibTorch archive may hold before
// LibTorch's TorchScript parser reads them.

#include <string>

namespace contaccum::detail {

/// True for a record LibTorch reads as TorchScript source when it loads an
/// archive (`<archive>/code/...py`).
bool is_archive_code(const std::string& record);

/// Throws `c10::Error` naming `what` (the file), `record` and the line
/// unless `text` holds only what LibTorch writes for an archive of
/// attributes (`OutputArchive`, `torch::save` of a module): classes named
/// `Module`, their `__parameters__` / `__buffers__` / `__annotations__`
/// lists and attribute declarations, typed with `Tensor`, `int`, `float`,
/// `bool`, `str`, `NoneType`, `Tuple`, `List`, `Optional`, `Dict` and
/// `__torch__...Module`. Checkpoints and weights are never code: anything
/// else in them (methods, constants, other classes) was not written by
/// LibTorch's serializer, and LibTorch 1.13's parser crashes on some such
/// input (found by the checkpoint fuzzer) instead of rejecting it.
void check_archive_code(const std::string& text, const std::string& what, const std::string& record);

}  // namespace contaccum::detail
