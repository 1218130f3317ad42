// The real `contaccum train`, killed with SIGKILL at random moments (during
// checkpoint writes too: it checkpoints every step) and resumed until it
// finishes, ends with weights identical, byte for byte, to a run that was
// never interrupted.
#include "child_processes.h"
#include "test_util.h"
#include "train/train_fixture.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

namespace contaccum {
namespace {

namespace fs = std::filesystem;

#ifdef CONTACCUM_CLI
// Starts `contaccum train` into `out` (always --resume: a fresh directory
// starts from scratch); kills it after `kill_after_ms` unless it ends first.
// Returns true when it finished by itself (with exit status 0).
bool run_cli(test::ChildProcesses& children, const fs::path& config, const fs::path& out, int64_t kill_after_ms) {
  const std::string log = (out.parent_path() / (out.filename().string() + ".log")).string();
  const auto pid = children.spawn({CONTACCUM_CLI, "--threads", "1", "train", "--config", config.string(), "--output",
                                   out.string(), "--resume", "--progress", "silent"},
                                  {}, log);
  if (pid == 0) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms);
  for (;;) {
    if (const int status = children.poll(pid); status >= 0) {
      EXPECT_EQ(status, 0) << "contaccum train failed; see " << log << ":\n" << test::slurp(log);
      return true;
    }
    if (kill_after_ms >= 0 && std::chrono::steady_clock::now() >= deadline) {
      children.kill_and_wait(pid, SIGKILL);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::map<std::string, torch::Tensor> weights_in(const fs::path& model_dir) {
  auto model = load_model(model_dir.string());
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model.model->named_parameters()) out[p.key()] = p.value().clone();
  return out;
}
#endif

TEST(KillResume, SigkillAtRandomMomentsThenResumeEqualsAStraightRun) {
#ifndef CONTACCUM_CLI
  GTEST_SKIP() << "built without the command-line tool";
#else
  test::TempDir work;
  test::ChildProcesses children;  // after `work`: stopped before it is removed
  const auto data = work.path / "data";
  build_synthetic_dataset(data.string(),
                          SyntheticDatasetOptions().seed(3).passages(400).train_queries(320).dev_queries(40));
  const auto config = work.path / "config.yaml";
  test::write_small_cli_config(config, data, /*steps=*/40, /*checkpoint_every=*/1);
  const auto straight = work.path / "straight";
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_cli(children, config, straight, -1));
  const auto run_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  const auto want = weights_in(straight / "model");

  std::mt19937 rng(static_cast<uint32_t>(std::random_device{}()));
  constexpr int kTrials = 6;
  int kills = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    const auto out = work.path / ("trial-" + std::to_string(trial));
    // Kill at a random moment of the run, up to three times, then let it end.
    // The first launch is as long as the straight run: its moment is drawn
    // from the first three quarters, so that a launch that happens to run
    // faster than the timed one (a machine whose load changes) is still
    // killed; the resumed ones are shorter and may finish.
    int launches = 0;
    bool finished = false;
    for (; launches < 3 && !finished; ++launches) {
      const int64_t latest = launches == 0 ? std::max<int64_t>(1, run_ms * 3 / 4) : run_ms;
      finished = run_cli(children, config, out, std::uniform_int_distribution<int64_t>(1, latest)(rng));
      kills += finished ? 0 : 1;
    }
    if (!finished) {
      ASSERT_TRUE(run_cli(children, config, out, -1));
    }
    ASSERT_TRUE(fs::exists(out / "model/weights.pt")) << out;
    const auto got = weights_in(out / "model");
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, tensor] : want) {
      EXPECT_TRUE(torch::equal(tensor, got.at(name)))
          << "trial " << trial << ": " << name << " differs after " << launches << " launches";
    }
  }
  std::cerr << kills << " kills in " << kTrials << " trials; straight run " << run_ms << " ms\n";
  EXPECT_GE(kills, kTrials) << "most launches must have been killed, or the test proves little";
#endif
}

}  // namespace
}  // namespace contaccum
