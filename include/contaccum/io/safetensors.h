#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace contaccum {

/// Everything a safetensors file holds: its tensors and its `__metadata__`.
struct SafetensorsContents {
  /// Tensors by name, each a fresh contiguous CPU tensor of the file's dtype.
  std::map<std::string, torch::Tensor> tensors;
  /// The header's `__metadata__` (string to string); empty when absent.
  std::map<std::string, std::string> metadata;
};

/// Reads a safetensors file: tensors and metadata.
///
/// The format is an 8-byte little-endian header length N, N bytes of JSON
/// header (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets":
/// [begin, end]}, ..., "__metadata__": {"key": "value"}}`), then the data
/// buffer, offsets relative to its start. Supported dtypes: F64, F32, F16,
/// BF16, I64, I32, I16, I8, U8, BOOL.
///
/// The file is validated as the reference implementation does, and more:
/// throws `c10::Error`, naming the file and the problem, when it is truncated,
/// the header length runs past the end of the file, the header is not a JSON
/// object or has a duplicate name, a field is missing or has the wrong type,
/// a dtype is unknown, a tensor's byte range is out of the buffer, overlaps
/// another, leaves a gap, or does not match shape times dtype size, the
/// buffer has trailing bytes, or a BOOL tensor holds a byte other than 0 or 1.
/// Tensors are read straight into their storage, so peak memory is about the
/// file's size.
SafetensorsContents read_safetensors(const std::string& path);

/// The tensors of a safetensors file, by name. See `read_safetensors`.
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

/// The `__metadata__` of a safetensors file, reading and validating only the
/// header (not the data). Empty when the file has none.
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

/// Writes `tensors` (and `metadata` as `__metadata__`, omitted when empty) to
/// a safetensors file at `path`, replacing any file there.
///
/// Tensors are written as contiguous little-endian CPU data (the inputs are
/// not changed), in the order of their sorted names, the header padded with
/// spaces to a multiple of 8 bytes as the reference implementation does. The
/// file is written to a temporary file in the same directory, flushed to disk
/// and renamed over `path`, so a crash leaves either the old file or the
/// complete new one. Throws `c10::Error` on an undefined tensor, an
/// unsupported dtype (anything but the ones `read_safetensors` reads), the
/// reserved name `__metadata__`, or an I/O failure (the temporary file is
/// then removed).
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace contaccum
