// verify_zip_checksums against the CRC-32s LibTorch's writer stores: an
// untouched archive passes, one flipped byte anywhere in a record's data is
// named, truncated or foreign files are refused with the file's name, and
// code records holding anything but the declarations LibTorch writes for
// saved values are refused before LibTorch's parser reads them.
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

// A zip archive of stored records with correct CRC-32s, as a crafted file
// would be: every check but the code records' passes.
std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& records) {
  auto le = [](std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  std::string body, directory;
  for (const auto& [name, data] : records) {
    const uint32_t crc = crc32_of(data.data(), data.size());
    const uint64_t offset = body.size();
    std::string fields;  // version, flags, method, time, date, crc, sizes, name and extra lengths
    le(fields, 20, 2), le(fields, 0, 2), le(fields, 0, 2), le(fields, 0, 4), le(fields, crc, 4);
    le(fields, data.size(), 4), le(fields, data.size(), 4), le(fields, name.size(), 2), le(fields, 0, 2);
    le(body, 0x04034b50, 4);
    body += fields + name + data;
    le(directory, 0x02014b50, 4);
    le(directory, 20, 2);
    directory += fields;
    le(directory, 0, 2), le(directory, 0, 2), le(directory, 0, 2), le(directory, 0, 4), le(directory, offset, 4);
    directory += name;
  }
  std::string end;
  le(end, 0x06054b50, 4), le(end, 0, 4), le(end, records.size(), 2), le(end, records.size(), 2);
  le(end, directory.size(), 4), le(end, body.size(), 4), le(end, 0, 2);
  return body + directory + end;
}

std::string code_error(const std::string& code) {
  const auto zip = stored_zip({{"a/data.pkl", "x"}, {"a/code/__torch__/m.py", code}});
  return test::error_of([&] { verify_zip_checksums(zip.data(), zip.size(), "crafted.pt"); });
}

TEST(ArchiveCode, AcceptsTheDeclarationsLibTorchWritesForSavedValues) {
  // Lines as LibTorch 1.13 writes them for checkpoints (the fuzzer's seeds)
  // and forms it writes for other saved values.
  EXPECT_EQ(code_error("class Module(Module):\n"
                       "  __parameters__ = [\"weight\", \"params/size\", ]\n"
                       "  __buffers__ = []\n"
                       "  __annotations__ = []\n"
                       "  __annotations__[\"0x610000100340\"] = __torch__.___torch_mangle_10.Module\n"
                       "  __annotations__[\"params/0\"] = str\n"
                       "  weight : Tensor\n"
                       "  betas : Tuple[float, float]\n"
                       "  steps : int\n"
                       "  lr : float\n"
                       "  training : bool\n"
                       "  model : __torch__.___torch_mangle_0.Module\n"
                       "  linear : __torch__.torch.nn.modules.linear.Linear\n"
                       "  maybe : Optional[List[Tensor]]\n"
                       "  table : Dict[str, Tensor]\n"),
            "no error");
}

// The checkpoint fuzzer's input that crashed LibTorch 1.13's TorchScript
// parser (every CRC-32 made to match): refused before LibTorch reads it.
TEST(ArchiveCode, RefusesTheFuzzersCheckpointThatCrashedLibTorch) {
  const auto bytes = test::slurp(CONTACCUM_TEST_DIR "/../fuzz/regressions/checkpoint/crash-torchscript-parser");
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums(bytes.data(), bytes.size(), "crash"); }),
              ::testing::HasSubstr("crash: damaged zip archive"));
}

// LibTorch writes a zip64 end record beside the classic one and reads only
// the zip64 one; a classic record that lists no records (as in the input
// above) must not hide the archive's records from the checks.
TEST_F(ZipChecksums, ChecksTheRecordsTheZip64DirectoryLists) {
  const auto path = (dir_ / "a.pt").string();
  auto bytes = saved_archive(path);
  const auto records = verify_zip_checksums(path);
  const auto end = bytes.rfind(std::string("PK\x05\x06", 4));
  ASSERT_NE(end, std::string::npos);
  ASSERT_EQ(bytes.substr(end - 20, 4), std::string("PK\x06\x07", 4)) << "LibTorch wrote no zip64 locator";
  for (int i = 8; i < 20; ++i) bytes[end + i] = 0;  // no entries, an empty directory at 0
  const auto& tensor = records.front();
  bytes[tensor.data_offset] ^= 0x10;
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums(bytes.data(), bytes.size(), "a.pt"); }),
              ::testing::HasSubstr("record '" + tensor.name + "'"));
  // A directory listing no records at all is refused.
  for (int i = 32; i < 48; ++i) bytes[end - 20 - 56 + i] = 0;
  EXPECT_THAT(test::error_of([&] { verify_zip_checksums(bytes.data(), bytes.size(), "a.pt"); }),
              ::testing::HasSubstr("lists no records"));
}

TEST(ArchiveCode, RefusesAnythingElseNamingTheRecordAndLine) {
  const auto error = code_error("class Module(Module):\n  __parameters__ = []\n  x : Final[int] = 3\n");
  EXPECT_THAT(error, ::testing::HasSubstr("crafted.pt"));
  EXPECT_THAT(error, ::testing::HasSubstr("record 'a/code/__torch__/m.py' line 3"));
  EXPECT_THAT(error, ::testing::HasSubstr("'  x : Final[int] = 3'"));
  std::string deep = "Tensor";
  for (int i = 0; i < 9; ++i) deep = "List[" + deep + "]";
  for (const std::string& line : std::vector<std::string>{
           "  def forward(self, x: Tensor) -> Tensor:", "import os", "class Module(Other):", "  x : Tensor = 1",
           "  x : Tensors", "  x : __torch__", "  x : __torch__.", "  x : Tuple[int,int]", "  x : " + deep,
           "  __parameters__ = [\"a\"]", "  __parameters__ = [\"a\\\"\", ]", "  __annotations__[\"a\"] = Final",
           "    x : Tensor", "  9x : Tensor", "class Module(Module): pass"}) {
    EXPECT_THAT(code_error("class Module(Module):\n" + line + "\n"), ::testing::HasSubstr("line 2")) << line;
  }
  EXPECT_THAT(code_error(std::string(2u << 20, '\n')), ::testing::HasSubstr("holds 2097152 bytes"));
  // Not code: a data record holds anything.
  const auto zip = stored_zip({{"a/data/0", "def forward"}, {"a/code/x.txt", "import os"}});
  EXPECT_EQ(verify_zip_checksums(zip.data(), zip.size(), "crafted.pt").size(), 2u);
}

}  // namespace
}  // namespace contaccum
