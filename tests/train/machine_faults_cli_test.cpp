// The real `contaccum train` against faults of the machine: a stop signal
// (SIGTERM, SIGINT, SIGUSR1; one process, and two ranks under the launcher)
// ends it after a checkpoint with status 128 + the signal, and `--resume`
// then ends with the weights of a run never stopped, bit for bit; a full disk
// (a tiny tmpfs, where the test may mount one) ends it with status 1 and a
// message naming the file, the reason and the newest intact checkpoint, and
// once there is space `--resume` ends with the straight run's weights too.
#include "child_processes.h"
#include "test_util.h"
#include "train/train_fixture.h"

#include <sys/mount.h>

#include <chrono>
#include <csignal>
#include <thread>

namespace contaccum {
namespace {

namespace fs = std::filesystem;

#ifdef CONTACCUM_CLI
struct FaultRun {
  test::TempDir work;
  test::ChildProcesses children;  // after `work`: stopped before it is removed
  fs::path config = work.path / "config.yaml";

  FaultRun(int64_t steps, int64_t checkpoint_every) {
    const auto data = work.path / "data";
    build_synthetic_dataset(data.string(),
                            SyntheticDatasetOptions().seed(3).passages(400).train_queries(320).dev_queries(40));
    test::write_small_cli_config(config, data, steps, checkpoint_every);
  }
  pid_t start(const fs::path& out, int ranks) {
    std::vector<std::string> args = {CONTACCUM_CLI, "--threads",  "1",        "train",      "--config", config.string(),
                                     "--output",    out.string(), "--resume", "--progress", "silent"};
    if (ranks > 1) {
      args.push_back("--nproc-per-node");
      args.push_back(std::to_string(ranks));
    }
    return children.spawn(args, {}, log_of(out));
  }
  static std::string log_of(const fs::path& out) { return out.string() + ".log"; }
  int run(const fs::path& out, int ranks) { return children.wait(start(out, ranks)); }
};

size_t lines_in(const fs::path& path) {
  std::ifstream in(path);
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

std::map<std::string, torch::Tensor> final_weights(const fs::path& out) {
  auto model = load_model((out / "model").string());
  std::map<std::string, torch::Tensor> weights;
  for (const auto& p : model.model->named_parameters()) weights[p.key()] = p.value().clone();
  return weights;
}

void expect_same_weights(const fs::path& a, const fs::path& b) {
  const auto want = final_weights(a), got = final_weights(b);
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, tensor] : want) EXPECT_TRUE(torch::equal(tensor, got.at(name))) << name;
}

struct SignalCase {
  int signal, ranks;
  // Sent to the whole process group, as a terminal's Ctrl-C and schedulers
  // do: the workers get it from the terminal and again from the launcher.
  bool to_group = false;
};

class GracefulStop : public ::testing::TestWithParam<SignalCase> {};

TEST_P(GracefulStop, CheckpointsAndExitsThenResumeEqualsAStraightRun) {
  const auto [signal, ranks, to_group] = GetParam();
  FaultRun run(60, 1000);
  const auto straight = run.work.path / "straight", stopped = run.work.path / "stopped";
  ASSERT_EQ(run.run(straight, ranks), 0) << test::slurp(FaultRun::log_of(straight));

  const pid_t pid = run.start(stopped, ranks);
  ASSERT_GT(pid, 0);
  // Signalled once a few steps are logged (well before the 60th).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (lines_in(stopped / "metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(to_group ? -pid : pid, signal);
  const int status = run.children.wait(pid);
  const auto log = test::slurp(FaultRun::log_of(stopped));
  EXPECT_EQ(status, 128 + signal) << log;
  const auto lines = test::read_jsonl((stopped / "metrics.jsonl").string());
  ASSERT_FALSE(lines.empty());
  const int64_t last = lines.back()["step"].get<int64_t>();
  ASSERT_LT(last, 60) << "the run ended before the signal: nothing was tested";
  // The step that was running finished and was checkpointed; no final model.
  EXPECT_TRUE(fs::exists(CheckpointManager((stopped / "checkpoints").string()).path_of(last))) << log;
  EXPECT_FALSE(fs::exists(stopped / "model"));
  EXPECT_THAT(log, ::testing::HasSubstr("continue with --resume"));

  ASSERT_EQ(run.run(stopped, ranks), 0) << test::slurp(FaultRun::log_of(stopped));
  expect_same_weights(straight, stopped);
}

INSTANTIATE_TEST_SUITE_P(EverySignal, GracefulStop,
                         ::testing::Values(SignalCase{SIGTERM, 1}, SignalCase{SIGINT, 1}, SignalCase{SIGUSR1, 1},
                                           SignalCase{SIGTERM, 2}, SignalCase{SIGINT, 2}, SignalCase{SIGUSR1, 2},
                                           SignalCase{SIGINT, 2, true}, SignalCase{SIGTERM, 2, true}),
                         [](const ::testing::TestParamInfo<SignalCase>& info) {
                           return std::string(sigabbrev_np(info.param.signal)) + "_ranks" +
                                  std::to_string(info.param.ranks) + (info.param.to_group ? "_group" : "");
                         });

// A tiny tmpfs fills up at the second checkpoint; remounted larger, the run
// resumes from the first and ends as a straight run does.
TEST(DiskFull, TheRunStopsCleanlyAndResumesOnceThereIsSpace) {
  FaultRun run(24, 8);
  const auto straight = run.work.path / "straight";
  ASSERT_EQ(run.run(straight, 1), 0) << test::slurp(FaultRun::log_of(straight));
  // Room for one checkpoint and the run's small files (config, vocabulary,
  // metrics: under 96 KiB), not for a second checkpoint.
  const auto one = fs::file_size(CheckpointManager((straight / "checkpoints").string()).latest().value());
  ASSERT_GT(one, 200u * 1024u);
  const auto disk = run.work.path / "disk";
  fs::create_directories(disk);
  const std::string size = "size=" + std::to_string((one + 96 * 1024 + 4095) / 4096 * 4096);
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, size.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "): needs root";
  }
  struct Unmount {
    fs::path at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{disk};
  const auto out = disk / "out";
  const int status = run.run(out, 1);
  const auto log = test::slurp(FaultRun::log_of(out));
  EXPECT_EQ(status, 1) << log;
  EXPECT_THAT(log, ::testing::HasSubstr("checkpoint of step 16 not written"));
  EXPECT_THAT(log, ::testing::HasSubstr("No space left on device"));
  EXPECT_THAT(log, ::testing::HasSubstr("The newest intact checkpoint is " + (out / "checkpoints").string() +
                                        "/step-000000008.pt"));
  EXPECT_THAT(log, ::testing::Not(::testing::HasSubstr("terminate called")));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out / "checkpoints")) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"step-000000008.pt"});

  ASSERT_EQ(::mount("tmpfs", disk.c_str(), "tmpfs", MS_REMOUNT, "size=64m"), 0) << std::strerror(errno);
  ASSERT_EQ(run.run(out, 1), 0) << test::slurp(FaultRun::log_of(out));
  expect_same_weights(straight, out);
}
// Requests beyond the machine are refused before anything starts, with the
// option, the value and a readable range (not CLI11's 309-digit double).
TEST(ResourceRequests, AbsurdThreadAndWorkerCountsAreRefusedReadably) {
  test::TempDir work;
  test::ChildProcesses children;
  const std::string limit = std::to_string(max_parallelism()), cores = std::to_string(available_cores());
  const std::string range = " (at most 4 x the " + cores + " cores this process may use), got ";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--threads", "100000", "train", "--list-keys"}, "--threads: must be in [0, " + limit + "]" + range + "100000"},
      {{"train", "--nproc-per-node", "500", "--list-keys"},
       "--nproc-per-node: must be in [1, " + limit + "]" + range + "500"},
      {{"train", "--nproc-per-node", "0", "--list-keys"},
       "--nproc-per-node: must be in [1, " + limit + "]" + range + "0"},
      {{"encode", "--nproc-per-node", "9999"}, "--nproc-per-node: must be in [1, " + limit + "]"},
      {{"--threads", "abc", "train", "--list-keys"}, "--threads: 'abc' is not a number"},
      {{"bm25", "--corpus", CONTACCUM_CLI, "--queries", CONTACCUM_CLI, "--qrels", CONTACCUM_CLI, "--k", "0"},
       "--k: must be >= 1, got 0"},
      // Integers beyond 64 bits (CLI11 saturated them silently) and nothing.
      {{"bm25", "--corpus", CONTACCUM_CLI, "--queries", CONTACCUM_CLI, "--qrels", CONTACCUM_CLI, "--k",
        "99999999999999999999"},
       "--k: '99999999999999999999' is out of range (at most 9223372036854775807)"},
      {{"bm25", "--corpus", CONTACCUM_CLI, "--queries", CONTACCUM_CLI, "--qrels", CONTACCUM_CLI, "--k", ""},
       "--k: '' is not a number"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<std::string> args = {CONTACCUM_CLI};
    args.insert(args.end(), cases[i].args.begin(), cases[i].args.end());
    const auto log = (work.path / ("case" + std::to_string(i) + ".log")).string();
    EXPECT_NE(children.wait(children.spawn(args, {}, log)), 0) << cases[i].message;
    const auto text = test::slurp(log);
    EXPECT_THAT(text, ::testing::HasSubstr(cases[i].message));
    EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr("179769313486231570814527423731704356798")));
  }
  // The library refuses them too: the launcher before it starts a worker.
  EXPECT_THAT(test::error_of([] { set_compute_threads(max_parallelism() + 1); }),
              ::testing::HasSubstr("threads must be at most " + limit));
  EXPECT_THAT(test::error_of(
                  [] { launch_local_workers({"/bin/true"}, LaunchOptions().nproc_per_node(max_parallelism() + 1)); }),
              ::testing::HasSubstr("--nproc-per-node must be at most " + limit));
}
#else
TEST(GracefulStop, NeedsTheCommandLineTool) { GTEST_SKIP() << "built without the command-line tool"; }
#endif

}  // namespace
}  // namespace contaccum
