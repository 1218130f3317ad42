#pragma once

#include <exception>
#include <string>

namespace contaccum {

/// An exception's message for a person: LibTorch's errors (`c10::Error`)
/// without the C++ stack trace their `what()` carries, others as they are.
/// For errors that wrap another one's message.
std::string error_text(const std::exception& e);

}  // namespace contaccum
