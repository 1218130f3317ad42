// A full disk or a failing device while the library writes: a fault injector
// in place of write(2) makes the k-th write of a checkpoint fail (ENOSPC,
// EIO, or a short write of a random number of bytes followed by ENOSPC), for
// every k. Each must end in a catchable error naming the file and the
// system's reason, with the temporary removed and the previous checkpoint
// untouched; a trainer names the newest intact checkpoint; metrics.jsonl
// never keeps a torn line.
#include "test_util.h"
#include "train/train_fixture.h"

#include <cerrno>
#include <cstring>
#include <random>

namespace contaccum {
namespace {

namespace fs = std::filesystem;

enum class Fault { NoSpace, IoError, ShortThenNoSpace };

// The injector's state (a plain function pointer replaces write(2)).
struct Injection {
  int64_t calls = 0;
  int64_t fail_at = -1;  // the call that fails; -1: none
  Fault fault = Fault::NoSpace;
  size_t short_bytes = 0;            // ShortThenNoSpace: bytes the failing call still writes
  std::string only_path_containing;  // fail only writes to files whose path holds it
};
Injection injection;

bool targets(int fd) {
  if (injection.only_path_containing.empty()) return true;
  char link[64], target[4096];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return false;
  return std::string(target, static_cast<size_t>(n)).find(injection.only_path_containing) != std::string::npos;
}

long faulty_write(int fd, const void* data, size_t size) {
  if (!targets(fd)) return ::write(fd, data, size);
  const int64_t call = injection.calls++;
  if (injection.fail_at < 0 || call < injection.fail_at) return ::write(fd, data, size);
  if (injection.fault == Fault::ShortThenNoSpace && call == injection.fail_at) {
    const size_t part = std::min(size - 1, injection.short_bytes % std::max<size_t>(1, size));
    if (part > 0) return ::write(fd, data, part);
  }
  errno = injection.fault == Fault::IoError ? EIO : ENOSPC;
  return -1;
}

// Installs the injector for the test's lifetime.
struct FaultyDisk {
  detail::WriteFunction previous;
  FaultyDisk() : previous(detail::set_write_function(&faulty_write)) { injection = Injection(); }
  ~FaultyDisk() { detail::set_write_function(previous); }
};

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

torch::serialize::OutputArchive sample_archive() {
  torch::manual_seed(1);
  torch::serialize::OutputArchive archive;
  archive.write("weights", torch::randn({300, 200}));
  archive.write("moments", torch::randn({50, 7}, torch::kDouble));
  archive.write("step", torch::tensor(int64_t{12}));
  return archive;
}

TEST(WriteFaults, EveryWriteOfACheckpointFailsCleanly) {
  test::TempDir dir;
  const auto path = (dir.path / "step-000000002.pt").string();
  auto archive = sample_archive();
  save_archive_atomically(archive, path);
  const auto before = test::slurp(path);
  FaultyDisk disk;
  save_archive_atomically(archive, path);  // counts the writes of one save
  const int64_t writes = injection.calls;
  ASSERT_GT(writes, 3);
  std::mt19937_64 rng(7);
  for (const Fault fault : {Fault::NoSpace, Fault::IoError, Fault::ShortThenNoSpace}) {
    for (int64_t k = 0; k < writes; ++k) {
      injection = Injection();
      injection.fail_at = k;
      injection.fault = fault;
      injection.short_bytes = static_cast<size_t>(rng());
      const auto error = test::error_of([&] { save_archive_atomically(archive, path); });
      const char* reason = fault == Fault::IoError ? "Input/output error" : "No space left on device";
      EXPECT_THAT(error, ::testing::HasSubstr("cannot write " + path)) << "write " << k;
      EXPECT_THAT(error, ::testing::HasSubstr(reason)) << "write " << k;
      EXPECT_EQ(names_in(dir.path), std::vector<std::string>{"step-000000002.pt"}) << "write " << k;
      EXPECT_EQ(test::slurp(path), before) << "write " << k;
    }
  }
  // Without a fault the same archive is written and reads back.
  injection = Injection();
  save_archive_atomically(archive, (dir.path / "again.pt").string());
  torch::serialize::InputArchive in;
  in.load_from((dir.path / "again.pt").string());
  torch::Tensor step;
  in.read("step", step);
  EXPECT_EQ(step.item<int64_t>(), 12);
}

// Embeddings (the npy data, the ids, info.json) on a failing disk: an error
// naming the file and the reason, and no directory left under the name.
TEST(WriteFaults, EveryWriteOfAnEmbeddingsDirectoryFailsCleanly) {
  test::TempDir dir;
  const auto path = (dir.path / "emb").string();
  const auto write = [&] {
    EmbeddingsInfo info;
    info.count = 6;
    info.dim = 4;
    EmbeddingsWriter writer(path, info);
    for (int block = 0; block < 3; ++block) {
      writer.append(torch::randn({2, 4}), {"p" + std::to_string(2 * block), "p" + std::to_string(2 * block + 1)});
    }
    writer.commit();
  };
  FaultyDisk disk;
  write();
  const int64_t writes = injection.calls;
  fs::remove_all(path);
  for (int64_t k = 0; k < writes; ++k) {
    injection = Injection();
    injection.fail_at = k;
    const auto error = test::error_of(write);
    EXPECT_THAT(error, ::testing::HasSubstr("No space left on device")) << "write " << k;
    EXPECT_THAT(error, ::testing::HasSubstr("cannot write " + path)) << "write " << k;
    EXPECT_TRUE(names_in(dir.path).empty()) << "write " << k;
  }
}

struct FaultyTrainer {
  std::shared_ptr<TrainingSet> set = test::tiny_training_set(40);
  Collator collator{test::hashing_tokenizer(test::kTinyVocab)};
  Trainer make(const std::string& dir, int64_t steps) {
    return Trainer(test::tiny_dual_encoder(2), StrategyOptions::contaccum(16, 4, 32), set, collator,
                   test::tiny_trainer_options(dir).max_steps(steps).checkpoint_every(2));
  }
};

TEST(WriteFaults, ATrainerWhoseCheckpointFailsNamesTheNewestIntactOne) {
  test::TempDir dir;
  FaultyTrainer t;
  FaultyDisk disk;
  injection.only_path_containing = "/checkpoints/step-";  // checkpoint files (and their temporaries) only
  injection.fail_at = 1'000'000;
  {
    auto trainer = t.make(dir.path.string(), 4);
    trainer.add_callback(std::make_shared<test::OnStepEnd>([](TrainerState& s) { s.should_stop = s.step == 2; }));
    trainer.train();  // stops after step 2's checkpoint, written whole
  }
  const auto intact = (dir.path / "checkpoints" / "step-000000002.pt").string();
  const auto saved = test::slurp(intact);
  injection.calls = 0;
  injection.fail_at = 3;
  auto trainer = t.make(dir.path.string(), 4);
  trainer.load_checkpoint(intact);
  const auto error = test::error_of([&] { trainer.train(); });
  EXPECT_THAT(error, ::testing::HasSubstr("checkpoint of step 4 not written"));
  EXPECT_THAT(error, ::testing::HasSubstr("No space left on device"));
  EXPECT_THAT(error, ::testing::HasSubstr("The newest intact checkpoint is " + intact));
  EXPECT_EQ(names_in(dir.path / "checkpoints"), std::vector<std::string>{"step-000000002.pt"});
  EXPECT_EQ(test::slurp(intact), saved);
}

TEST(WriteFaults, AFailedMetricsAppendLeavesOnlyWholeLines) {
  test::TempDir dir;
  FaultyTrainer t;
  FaultyDisk disk;
  injection.only_path_containing = "metrics.jsonl";
  injection.fault = Fault::ShortThenNoSpace;
  injection.short_bytes = 17;
  injection.fail_at = 2;  // the third line
  auto trainer = t.make(dir.path.string(), 6);
  const auto error = test::error_of([&] { trainer.train(); });
  EXPECT_THAT(error, ::testing::HasSubstr("cannot write " + (dir.path / "metrics.jsonl").string()));
  EXPECT_THAT(error, ::testing::HasSubstr("appending step 3 failed: No space left on device"));
  const auto text = test::slurp((dir.path / "metrics.jsonl").string());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const auto lines = test::read_jsonl((dir.path / "metrics.jsonl").string());  // throws on a torn line
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["step"], 2);
}

}  // namespace
}  // namespace contaccum
