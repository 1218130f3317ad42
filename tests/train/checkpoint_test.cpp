#include <contaccum/train/checkpoint.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "train/train_fixture.h"

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace contaccum {
namespace {

TEST(CheckpointManager, KeepsTheNewestAndIgnoresStrayFiles) {
  test::TempDir dir;
  CheckpointManager manager(dir / "ckpt", 2);
  EXPECT_FALSE(manager.latest().has_value());
  for (int64_t step : {5, 10, 1000000000, 20}) {
    manager.save(step, [&](torch::serialize::OutputArchive& a) { a.write("step", torch::tensor(step)); });
  }
  // An interrupted save leaves a temporary file; it is no checkpoint.
  std::ofstream(dir / "ckpt/step-000000030.pt.tmp-1-abc") << "torn";
  const auto all = manager.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fs::path(all[0]).filename(), "step-000000020.pt");
  EXPECT_EQ(fs::path(all[1]).filename(), "step-1000000000.pt");
  torch::serialize::InputArchive in;
  in.load_from(*manager.latest());
  torch::Tensor step;
  in.read("step", step);
  EXPECT_EQ(step.item<int64_t>(), 1000000000);
}

TEST(CheckpointManager, RejectsBadOptions) {
  EXPECT_THAT([] { CheckpointManager("x", 0); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("keep_last must be >= 1, got 0")));
}

TEST(AtomicWrite, ReplacesWholeFileAndLeavesNoTemporary) {
  test::TempDir dir;
  const auto path = dir / "sub/a.txt";
  write_file_atomically(path, "first version, longer\n");
  write_file_atomically(path, "second\n");
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "second\n");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(AtomicWrite, FailureNamesThePathAndKeepsTheOldFile) {
  test::TempDir dir;
  const auto path = dir / "a.txt";
  write_file_atomically(path, "old\n");
  // A directory where the temporary file's directory should be: unwritable.
  EXPECT_THAT([&] { write_file_atomically(dir / "a.txt/b.txt", "x"); },
              ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("a.txt")));
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "old\n");
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// The rename's own errno text, not the cleanup's ("Success").
TEST(AtomicWrite, NamesTheRealErrorOfAFailedRename) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path / "target");
  std::ofstream(dir.path / "target" / "keep") << "x";
  const auto error = test::error_of([&] { write_file_atomically(dir / "target", "text"); });
  EXPECT_THAT(error, ::testing::HasSubstr("Is a directory"));
  EXPECT_THAT(error, ::testing::Not(::testing::HasSubstr("Success")));
  EXPECT_EQ(remove_stale_temporaries(dir.path.string()), 0) << "the temporary file must be gone";
}

}  // namespace
}  // namespace contaccum
