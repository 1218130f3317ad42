#include "contaccum/io/zip_checksums.h"

#include "archive_code.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>

namespace contaccum {
namespace {

// Little-endian fields of zip headers.
uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A code record larger than this is not one LibTorch wrote for saved values.
constexpr uint64_t kLargestCode = uint64_t{1} << 20;

constexpr uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50, kEnd = 0x06054b50, kZip64End = 0x06064b50,
                   kZip64Locator = 0x07064b50;

// Random access to the archive's bytes, a file or a buffer.
class Bytes {
 public:
  using ReadFn = std::function<void(uint64_t offset, uint64_t n, unsigned char* out)>;
  Bytes(uint64_t size, ReadFn read, std::string what) : size_(size), read_(std::move(read)), what_(std::move(what)) {}

  uint64_t size() const { return size_; }
  const std::string& what() const { return what_; }

  // `n` bytes at `offset`; throws (naming the file) when they run past its end.
  std::vector<unsigned char> at(uint64_t offset, uint64_t n, const char* part) const {
    require(offset <= size_ && n <= size_ - offset, part, offset, n);
    std::vector<unsigned char> out(n);
    if (n > 0) read_(offset, n, out.data());
    return out;
  }
  void require(bool ok, const char* part, uint64_t offset, uint64_t n) const {
    TORCH_CHECK(ok, what_, ": damaged or truncated zip archive: its ", part, " (", n, " bytes at offset ", offset,
                ") lies past the end of the file (", size_, " bytes)");
  }
  // CRC-32 of the bytes a raw-deflate stream of `n` bytes at `offset`
  // inflates to; their count must be `expected`. Those bytes go to `kept`
  // too when it is given.
  uint32_t inflated_crc(uint64_t offset, uint64_t n, uint64_t expected, const std::string& name,
                        std::string* kept = nullptr) const {
    require(offset <= size_ && n <= size_ - offset, "record data", offset, n);
    const auto in = at(offset, n, "record data");
    z_stream z{};
    TORCH_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, what_, ": cannot start zlib's inflate");
    std::vector<unsigned char> out(1 << 16);
    uint32_t c = 0;
    uint64_t produced = 0;
    z.next_in = const_cast<unsigned char*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    int rc = Z_OK;
    while (rc == Z_OK) {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      rc = inflate(&z, Z_NO_FLUSH);
      const uint64_t got = out.size() - z.avail_out;
      c = crc32_of(out.data(), got, c);
      if (kept && produced + got <= expected) kept->append(reinterpret_cast<const char*>(out.data()), got);
      produced += got;
      if (rc == Z_BUF_ERROR && got > 0) rc = Z_OK;  // output full, go on
    }
    inflateEnd(&z);
    TORCH_CHECK(rc == Z_STREAM_END && produced == expected, what_, ": damaged: compressed record '", name,
                "' does not inflate to its ", expected, " bytes");
    return c;
  }
  uint32_t crc(uint64_t offset, uint64_t n) const {
    require(offset <= size_ && n <= size_ - offset, "record data", offset, n);
    uint32_t c = 0;
    std::vector<unsigned char> block(std::min<uint64_t>(n, uint64_t{1} << 20));
    for (uint64_t done = 0; done < n;) {
      const uint64_t len = std::min<uint64_t>(block.size(), n - done);
      read_(offset + done, len, block.data());
      c = crc32_of(block.data(), len, c);
      done += len;
    }
    return c;
  }

 private:
  uint64_t size_;
  ReadFn read_;
  std::string what_;
};

struct Directory {
  uint64_t entries = 0, offset = 0, size = 0;
};

// The end-of-central-directory record (zip64 when the writer needed it).
Directory find_directory(const Bytes& bytes) {
  const uint64_t size = bytes.size();
  TORCH_CHECK(size >= 22, bytes.what(), ": not a zip archive (", size, " bytes; LibTorch archives are zip files)");
  // The record is 22 bytes plus a comment of up to 65535 bytes at the end.
  const uint64_t tail = std::min<uint64_t>(size, 22 + 65535);
  const auto buf = bytes.at(size - tail, tail, "end record");
  int64_t at = -1;
  for (int64_t i = static_cast<int64_t>(tail) - 22; i >= 0; --i) {
    if (le(&buf[i], 4) == kEnd && static_cast<uint64_t>(i) + 22 + le(&buf[i + 20], 2) == tail) {
      at = i;
      break;
    }
  }
  TORCH_CHECK(at >= 0, bytes.what(), ": not a zip archive or truncated (no end-of-central-directory record)");
  const unsigned char* e = &buf[at];
  Directory d{le(e + 10, 2), le(e + 16, 4), le(e + 12, 4)};
  const uint64_t end_offset = size - tail + static_cast<uint64_t>(at);
  // A zip64 locator right before the record makes the zip64 end record the
  // one that counts, whatever the classic record says: LibTorch writes both,
  // and its reader (miniz) then reads only the zip64 one.
  const bool saturated = d.entries == 0xffff || d.offset == 0xffffffffu || d.size == 0xffffffffu;
  const bool located = end_offset >= 20 && le(bytes.at(end_offset - 20, 4, "zip64 locator").data(), 4) == kZip64Locator;
  if (saturated || located) {
    TORCH_CHECK(end_offset >= 20, bytes.what(), ": damaged zip archive (no zip64 locator)");
    const auto locator = bytes.at(end_offset - 20, 20, "zip64 locator");
    TORCH_CHECK(le(locator.data(), 4) == kZip64Locator, bytes.what(), ": damaged zip archive (bad zip64 locator)");
    const auto end64 = bytes.at(le(&locator[8], 8), 56, "zip64 end record");
    TORCH_CHECK(le(end64.data(), 4) == kZip64End, bytes.what(), ": damaged zip archive (bad zip64 end record)");
    d = {le(&end64[32], 8), le(&end64[48], 8), le(&end64[40], 8)};
  }
  bytes.require(d.offset <= end_offset && d.size <= end_offset - d.offset, "central directory", d.offset, d.size);
  // Every LibTorch archive holds records (its pickle, its version).
  TORCH_CHECK(d.entries > 0, bytes.what(), ": damaged zip archive (its directory lists no records)");
  return d;
}

// Sizes and offset of a central-directory entry, from its zip64 extra field
// where the 32-bit fields are saturated.
void apply_zip64(const unsigned char* extra, uint64_t length, uint64_t& size, uint64_t& compressed, uint64_t& offset,
                 const std::string& what, const std::string& name) {
  for (uint64_t i = 0; i + 4 <= length;) {
    const uint64_t id = le(extra + i, 2), n = le(extra + i + 2, 2);
    TORCH_CHECK(i + 4 + n <= length, what, ": damaged zip archive (extra field of '", name, "' overruns)");
    if (id == 0x0001) {
      uint64_t at = i + 4;
      auto take = [&](uint64_t& field) {
        if (field != 0xffffffffu) return;
        TORCH_CHECK(at + 8 <= i + 4 + n, what, ": damaged zip archive (short zip64 field of '", name, "')");
        field = le(extra + at, 8);
        at += 8;
      };
      take(size);
      take(compressed);
      take(offset);
      return;
    }
    i += 4 + n;
  }
}

std::vector<ZipRecord> verify(const Bytes& bytes) {
  const auto dir = find_directory(bytes);
  const auto cd = bytes.at(dir.offset, dir.size, "central directory");
  std::vector<ZipRecord> records;
  uint64_t pos = 0;
  for (uint64_t entry = 0; entry < dir.entries; ++entry) {
    TORCH_CHECK(pos + 46 <= cd.size() && le(&cd[pos], 4) == kCentralHeader, bytes.what(),
                ": damaged zip archive (central directory entry ", entry, " of ", dir.entries, " is malformed)");
    const unsigned char* h = &cd[pos];
    const uint64_t method = le(h + 10, 2), name_len = le(h + 28, 2), extra_len = le(h + 30, 2),
                   comment_len = le(h + 32, 2);
    TORCH_CHECK(pos + 46 + name_len + extra_len + comment_len <= cd.size(), bytes.what(),
                ": damaged zip archive (central directory entry ", entry, " overruns the directory)");
    ZipRecord r;
    r.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    r.stored_crc32 = static_cast<uint32_t>(le(h + 16, 4));
    uint64_t compressed = le(h + 20, 4), size = le(h + 24, 4), offset = le(h + 42, 4);
    apply_zip64(h + 46 + name_len, extra_len, size, compressed, offset, bytes.what(), r.name);
    // LibTorch stores tensors (method 0) and deflates a module's code files.
    TORCH_CHECK(method == 0 || method == 8, bytes.what(), ": damaged zip archive: record '", r.name,
                "' uses compression method ", method, " (LibTorch writes 0 and 8 only)");
    TORCH_CHECK(method == 8 || compressed == size, bytes.what(), ": damaged zip archive: stored record '", r.name,
                "' claims ", compressed, " bytes stored for ", size);
    const auto local = bytes.at(offset, 30, "local header");
    TORCH_CHECK(le(local.data(), 4) == kLocalHeader, bytes.what(), ": damaged zip archive (no local header for '",
                r.name, "' at offset ", offset, ")");
    // Every name is stored twice, in the local header and the directory;
    // no CRC covers either, so a damaged name shows as a disagreement.
    const uint64_t local_name_len = le(&local[26], 2);
    const auto local_name = bytes.at(offset + 30, local_name_len, "local header name");
    TORCH_CHECK(std::string(local_name.begin(), local_name.end()) == r.name, bytes.what(),
                ": damaged zip archive: record '", r.name, "' is named '",
                std::string(local_name.begin(), local_name.end()), "' in its local header");
    r.data_offset = offset + 30 + local_name_len + le(&local[28], 2);
    r.size = compressed;
    // TorchScript source, which LibTorch parses on load: checked below.
    const bool code = detail::is_archive_code(r.name);
    TORCH_CHECK(!code || size <= kLargestCode, bytes.what(), ": damaged or not a contaccum archive: code record '",
                r.name, "' holds ", size, " bytes (LibTorch writes a few hundred for saved values)");
    std::string text;
    uint32_t actual = 0;
    if (method == 8) {
      actual = bytes.inflated_crc(r.data_offset, r.size, size, r.name, code ? &text : nullptr);
    } else if (code) {
      const auto stored = bytes.at(r.data_offset, r.size, "record data");
      text.assign(stored.begin(), stored.end());
      actual = crc32_of(stored.data(), stored.size());
    } else {
      actual = bytes.crc(r.data_offset, r.size);
    }
    TORCH_CHECK(actual == r.stored_crc32, bytes.what(), ": damaged: record '", r.name, "' (", r.size,
                " bytes) has CRC-32 ", actual, " but ", r.stored_crc32,
                " was stored when it was written; the file changed since");
    if (code) detail::check_archive_code(text, bytes.what(), r.name);
    records.push_back(std::move(r));
    pos += 46 + name_len + extra_len + comment_len;
  }
  return records;
}

}  // namespace

uint32_t crc32_of(const void* data, uint64_t size, uint32_t crc) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (size > 0) {
    const uInt n = static_cast<uInt>(std::min<uint64_t>(size, std::numeric_limits<uInt>::max()));
    c = ::crc32(c, p, n);
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(c);
}

std::vector<ZipRecord> verify_zip_checksums(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const off_t end = ::lseek(fd, 0, SEEK_END);
  TORCH_CHECK(end >= 0, path, ": cannot seek: ", std::strerror(errno));
  Bytes bytes(
      static_cast<uint64_t>(end),
      [&](uint64_t offset, uint64_t n, unsigned char* out) {
        while (n > 0) {
          const ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
          if (got < 0 && errno == EINTR) continue;
          TORCH_CHECK(got > 0, path, ": read error at offset ", offset, ": ",
                      got == 0 ? "unexpected end of file" : std::strerror(errno));
          out += got;
          offset += static_cast<uint64_t>(got);
          n -= static_cast<uint64_t>(got);
        }
      },
      path);
  return verify(bytes);
}

std::vector<ZipRecord> verify_zip_checksums(const void* data, uint64_t size, const std::string& what) {
  const auto* base = static_cast<const unsigned char*>(data);
  Bytes bytes(
      size, [&](uint64_t offset, uint64_t n, unsigned char* out) { std::memcpy(out, base + offset, n); }, what);
  return verify(bytes);
}

}  // namespace contaccum
