#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace contaccum {

/// One record (member file) of a zip archive, as its central directory
/// describes it.
struct ZipRecord {
  std::string name;
  /// CRC-32 the writer stored for the record's bytes.
  uint32_t stored_crc32 = 0;
  /// Offset of the record's bytes in the file, and their length there.
  uint64_t data_offset = 0;
  uint64_t size = 0;
};

/// Checks every record of the zip archive at `path` (LibTorch's
/// serialization format: `torch::save`, `OutputArchive::save_to`) against
/// the CRC-32 its writer stored, and returns the records.
///
/// LibTorch writes a CRC-32 for every record but, built with
/// `MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS`, never checks it on load, so a
/// flipped byte in a tensor loads silently. Throws `c10::Error` naming the
/// file and the record when a CRC differs, when a record's two copies of its
/// name (local header, central directory) disagree, when the file is
/// truncated, or
/// when it is not a zip archive at all. Tensors are stored records; a
/// module's code files are deflated, and are checked after inflating them.
/// Those code files must also hold only the class declarations LibTorch
/// writes for saved values (no methods, constants or other source): LibTorch
/// parses them as TorchScript on load, and its parser crashes on some
/// crafted source rather than rejecting it.
/// Reads the file once, in blocks.
std::vector<ZipRecord> verify_zip_checksums(const std::string& path);

/// The same for an archive held in memory; `what` names it in errors.
std::vector<ZipRecord> verify_zip_checksums(const void* data, uint64_t size, const std::string& what);

/// CRC-32 (zlib's polynomial) of `size` bytes, continuing from `crc`.
uint32_t crc32_of(const void* data, uint64_t size, uint32_t crc = 0);

}  // namespace contaccum
