// The one atomic writer every file of the library goes through.
#include "test_util.h"

#include <contaccum/io/atomic_file.h>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class AtomicFileTest : public test::TempDirTest {
 protected:
  std::vector<std::string> entries(const fs::path& dir) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(AtomicFileTest, AppearsOnlyOnCommit) {
  const auto path = (dir_ / "a.bin").string();
  write("a.bin", "old");
  {
    AtomicFile file(path);
    file.write("new ");
    file.write("bytes", 5);
    EXPECT_EQ(test::slurp(path), "old") << "the old file stays until commit";
    EXPECT_THAT(file.temporary_path(), HasSubstr("a.bin.tmp-" + std::to_string(::getpid()) + "-"));
    file.commit();
    EXPECT_THROW(file.write("more"), c10::Error);
  }
  EXPECT_EQ(test::slurp(path), "new bytes");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"a.bin"});
}

TEST_F(AtomicFileTest, AbandonedWriteLeavesTheOldFileAndNoTemporary) {
  const auto path = write("a.bin", "old");
  try {
    AtomicFile file(path);
    file.write("half");
    throw std::runtime_error("writer failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(test::slurp(path), "old");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"a.bin"});
  EXPECT_THAT(test::error_of([&] {
                write_atomically_through(path, [](const ByteSink& sink) {
                  sink("half", 4);
                  TORCH_CHECK(false, "archive broke");
                });
              }),
              HasSubstr("cannot write " + path + ": archive broke"));
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"a.bin"});
}

TEST_F(AtomicFileTest, ErrorsNameThePathAndTheReason) {
  const auto missing = (dir_ / "no" / "such" / "a.bin").string();
  EXPECT_THAT(test::error_of([&] { AtomicFile file(missing); }),
              HasSubstr("cannot write " + missing + ": cannot create temporary file"));
  fs::create_directories(dir_ / "taken" / "child");
  const auto taken = (dir_ / "taken").string();
  const auto error = test::error_of([&] {
    AtomicFile file(taken);
    file.write("x");
    file.commit();
  });
  EXPECT_THAT(error, HasSubstr("cannot write " + taken + ": rename from"));
  EXPECT_THAT(error, ::testing::AnyOf(HasSubstr("Is a directory"), HasSubstr("Directory not empty")));
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"taken"});
  // write_file_atomically creates missing parents.
  write_file_atomically(missing, "deep");
  EXPECT_EQ(test::slurp(missing), "deep");
}

TEST_F(AtomicFileTest, TemporaryNamesAreUnique) {
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) names.insert(temporary_name_beside("x"));
  EXPECT_EQ(names.size(), 1000u);
  EXPECT_EQ(fs::path(temporary_name_beside((dir_ / "d").string(), true)).filename().string().rfind(".d.tmp-", 0), 0u);
}

TEST_F(AtomicFileTest, DirectoryIsSwappedInWholeOrNotAtAll) {
  const auto out = dir_ / "data";
  {
    AtomicDirectory d(out.string());
    std::ofstream(fs::path(d.temporary_path()) / "one") << "1";
    EXPECT_FALSE(fs::exists(out));
    d.commit();
  }
  EXPECT_EQ(entries(out), std::vector<std::string>{"one"});
  {
    AtomicDirectory d(out.string());
    std::ofstream(fs::path(d.temporary_path()) / "two") << "2";
    d.commit();  // replaces the non-empty directory
  }
  EXPECT_EQ(entries(out), std::vector<std::string>{"two"});
  {
    AtomicDirectory d((out.string() + "/"));  // "data/" names "data"
    std::ofstream(fs::path(d.temporary_path()) / "three") << "3";
  }  // not committed: nothing changes, nothing is left
  EXPECT_EQ(entries(out), std::vector<std::string>{"two"});
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"data"});
  const auto file = write("plain", "x");
  EXPECT_THAT(test::error_of([&] { AtomicDirectory d(file); }), HasSubstr("exists and is not a directory"));
}

}  // namespace
}  // namespace contaccum
