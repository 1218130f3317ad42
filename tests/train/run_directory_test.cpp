// A run owns its output directory (a lock against a second writer, no new run
// over another run's checkpoints, no resume with another config), and resume
// passes over damaged checkpoints to the newest valid one.
#include "test_util.h"
#include "train/train_fixture.h"

#include <sys/file.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <unistd.h>

namespace contaccum {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(RunDirectoryLock, RefusesASecondProcessAndIsSharedWithinOne) {
  test::TempDir dir;
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // another process holding the lock (plain syscalls only)
    const int fd = ::open((dir.path / ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    const int ok = fd >= 0 && ::flock(fd, LOCK_EX) == 0 ? 1 : 0;
    char c = static_cast<char>(ok);
    [[maybe_unused]] auto w = ::write(ready[1], &c, 1);
    [[maybe_unused]] auto r = ::read(release[0], &c, 1);
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 1);
  EXPECT_THAT(test::error_of([&] { RunDirectoryLock lock(dir.path.string()); }),
              AllOf(HasSubstr(dir.path.string()), HasSubstr("is in use by another training run")));
  [[maybe_unused]] auto w = ::write(release[1], &c, 1);
  int status = 0;
  ::waitpid(child, &status, 0);
  // Released when the holder is gone; two locks of this process share one.
  RunDirectoryLock a(dir.path.string());
  RunDirectoryLock b(dir.path.string());
  EXPECT_EQ(b.directory(), dir.path.string());
}

TEST(RunDirectory, RemovesOnlyStaleTemporaries) {
  test::TempDir dir;
  fs::create_directories(dir.path / "checkpoints");
  for (const char* name : {"checkpoints/step-000000004.pt.tmp-123-0a1b2c3d", "model/.weights.safetensors.tmp-9-3",
                           "vocab.txt.tmp.77", "checkpoints/step-000000004.pt", "notes.tmp"}) {
    fs::create_directories((dir.path / name).parent_path());
    std::ofstream(dir.path / name) << "x";
  }
  EXPECT_EQ(remove_stale_temporaries(dir.path.string()), 3);
  EXPECT_TRUE(fs::exists(dir.path / "checkpoints/step-000000004.pt"));
  EXPECT_TRUE(fs::exists(dir.path / "notes.tmp"));
}

struct Resume : ::testing::Test {
  std::shared_ptr<TrainingSet> set = test::tiny_training_set(48);
  Collator collator{test::hashing_tokenizer(test::kTinyVocab)};
  test::TempDir dir;
  std::unique_ptr<Trainer> make(uint64_t seed = 1) {
    return std::make_unique<Trainer>(
        test::tiny_dual_encoder(seed), StrategyOptions::contaccum(16, 4, 20), set, collator,
        test::tiny_trainer_options(dir.path.string()).checkpoint_every(2).keep_checkpoints(3));
  }
  std::string checkpoint(int64_t step) const { return CheckpointManager(dir / "checkpoints").path_of(step); }
};

TEST_F(Resume, ANewRunRefusesAnotherRunsCheckpoints) {
  make()->train();
  auto again = make();
  EXPECT_THAT(test::error_of([&] { again->train(); }),
              AllOf(HasSubstr("already holds checkpoints of another run"), HasSubstr("step-000000008.pt")));
  EXPECT_TRUE(fs::exists(checkpoint(8))) << "the other run's checkpoints must survive";
}

TEST_F(Resume, PassesOverDamagedCheckpointsToTheNewestValidOne) {
  make()->train();  // checkpoints 4, 6, 8
  ASSERT_TRUE(fs::exists(checkpoint(4)));
  std::ofstream(checkpoint(8), std::ios::trunc).flush();  // torn to 0 bytes
  auto bytes = test::slurp(checkpoint(6));
  ZipRecord largest;  // one flipped bit inside a tensor's data
  for (const auto& r : verify_zip_checksums(checkpoint(6))) largest = r.size > largest.size ? r : largest;
  bytes[largest.data_offset + largest.size / 2] ^= 0x10;
  std::ofstream(checkpoint(6), std::ios::binary | std::ios::trunc) << bytes;
  std::ofstream(dir / "checkpoints/step-000000010.pt.tmp-99-deadbeef") << "torn";

  auto resumed = make(7);
  ASSERT_TRUE(resumed->resume_latest());
  EXPECT_EQ(resumed->state().step, 4);
  EXPECT_FALSE(fs::exists(dir / "checkpoints/step-000000010.pt.tmp-99-deadbeef"));
  // Loading the damaged one by name names it and the damage.
  EXPECT_THAT(test::error_of([&] { make(8)->load_checkpoint(checkpoint(6)); }),
              AllOf(HasSubstr(checkpoint(6)), HasSubstr("damaged")));

  std::ofstream(checkpoint(4), std::ios::trunc).flush();
  EXPECT_THAT(test::error_of([&] { make(9)->resume_latest(); }),
              AllOf(HasSubstr("every checkpoint in"), HasSubstr("step-000000004.pt"), HasSubstr("step-000000006.pt")));
}

}  // namespace
}  // namespace contaccum
