// verify_zip_checksums against the CRC-32s LibTorch's writer stores: an
// untouched archive passes, one flipped byte anywhere in a record's data is
// named, and truncated or foreign files are refused with the file's name.
#include "test_util.h"

#include <contaccum/io/zip_checksums.h>

#include <random>

namespace contaccum {
namespace {

std::string saved_archive(const std::string& path) {
  torch::serialize::OutputArchive out;
  out.write("weights", torch::randn({64, 16}));
  out.write("bias", torch::randn({16}));
  torch::serialize::OutputArchive nested;
  nested.write("steps", torch::tensor(int64_t{7}));
  out.write("nested", nested);
  out.save_to(path);
  return test::slurp(path);
}

using ZipChecksums = test::TempDirTest;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST_F(ZipChecksums, AcceptsWhatLibTorchWroteAndAgreesWithZlib) {
  const auto path = (dir_ / "a.pt").string();
  const auto bytes = saved_archive(path);
  const auto records = verify_zip_checksums(path);
  ASSERT_GE(records.size(), 3u);
  for (const auto& r : records) {
    // The record's bytes, read through the offsets the directory gives, have
    // the stored CRC (an independent check of the offsets and of crc32_of).
    ASSERT_LE(r.data_offset + r.size, bytes.size()) << r.name;
    if (r.name.find("/data/") == std::string::npos) continue;  // code files are deflated
    EXPECT_EQ(crc32_of(bytes.data() + r.data_offset, r.size), r.stored_crc32) << r.name;
  }
  EXPECT_EQ(crc32_of("123456789", 9), 0xcbf43926u);  // the CRC-32 check value
  EXPECT_EQ(verify_zip_checksums(bytes.data(), bytes.size(), "buffer").size(), records.size());
}

TEST_F(ZipChecksums, NamesTheRecordOfAnyFlippedDataByte) {
  const auto path = (dir_ / "a.pt").string();
  const auto bytes = saved_archive(path);
  const auto records = verify_zip_checksums(path);
  std::mt19937 rng(5);
  for (const auto& r : records) {
    if (r.size == 0) continue;
    for (int trial = 0; trial < 4; ++trial) {
      auto damaged = bytes;
      const uint64_t at = r.data_offset + std::uniform_int_distribution<uint64_t>(0, r.size - 1)(rng);
      damaged[at] = static_cast<char>(damaged[at] ^ (1 << (trial % 8)));
      write_bytes(path, damaged);
      EXPECT_THAT(test::error_of([&] { verify_zip_checksums(path); }),
                  ::testing::AllOf(::testing::HasSubstr(path), ::testing::HasSubstr("damaged"),
                                   ::testing::HasSubstr("record '" + r.name + "'")))
          << "byte " << at;
    }
  }
}

// Names are covered by no CRC, but are stored twice.
TEST_F(ZipChecksums, NamesARecordWhoseNameWasDamaged) {
  const auto path = (dir_ / "a.pt").string();
  const auto bytes = saved_archive(path);
  const auto name = verify_zip_checksums(path).back().name;
  const auto at = bytes.rfind(name);  // the central directory's copy
  ASSERT_NE(at, std::string::npos);
  auto damaged = bytes;
  damaged[at + name.size() - 1] ^= 0x01;
  write_bytes(path, damaged);
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums(path); }), ::testing::HasSubstr("in its local header"));
}

TEST_F(ZipChecksums, RefusesTruncatedEmptyAndForeignFiles) {
  const auto path = (dir_ / "a.pt").string();
  const auto bytes = saved_archive(path);
  for (size_t keep : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    write_bytes(path, bytes.substr(0, keep));
    EXPECT_THAT(test::error_of([&] { verify_zip_checksums(path); }), ::testing::HasSubstr(path)) << keep;
    EXPECT_NE(test::error_of([&] { verify_zip_checksums(path); }), "no error") << keep;
  }
  write_bytes(path, std::string(4096, 'x'));
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums(path); }), ::testing::HasSubstr("not a zip archive"));
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums((dir_ / "missing.pt").string()); }),
              ::testing::HasSubstr("cannot open: No such file or directory"));
}

}  // namespace
}  // namespace contaccum
