// contaccum train --config FILE.yaml [--set key=value ...] --output DIR [--resume]
#include "cli_checks.h"
#include "command.h"
#include "workers.h"

#include <contaccum/contaccum.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <iostream>

namespace contaccum::cli {
namespace {

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

class TrainCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("train", "train a dual encoder as a YAML config says");
    app_->add_option("--config", config_path_, "YAML config")->check(CLI::ExistingFile);
    app_->add_option("--set", overrides_, "override a config key: key=value (repeatable)");
    app_->add_option("--output", output_dir_, "output directory");
    app_->add_flag("--resume", resume_, "continue from the newest checkpoint in the output directory");
    app_->add_option("--progress", progress_, "auto, bar, lines or silent")
        ->check(CLI::IsMember({"auto", "bar", "lines", "silent"}));
    app_->add_option("--device", device_,
                     "auto, cpu, cuda (each worker its own GPU) or cuda:N; the same as --set device=...")
        ->check([](const std::string& text) { return device_spec()(text); });
    app_->add_flag("--list-keys", list_keys_, "print every config key with its default and exit");
    app_->add_option("--nproc-per-node", nproc_,
                     "start this many worker processes on this machine for data-parallel training (as torchrun "
                     "does); workers started by a launcher read RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT instead")
        ->check(cli::parallelism(1));
  }

  int run() override {
    if (list_keys_) {
      std::cout << TrainConfig().to_yaml(/*docs=*/true);
      return 0;
    }
    if (config_path_.empty() || output_dir_.empty()) {
      std::cerr << "contaccum train: --config and --output are required\n";
      return 2;
    }
    if (!device_.empty()) overrides_.push_back("device=" + device_);
    auto config = TrainConfig::load(config_path_, overrides_);
    const auto env = DistributedEnvironment::from_environment();
    if (nproc_ > 1 && !env) return launch_workers("train", nproc_);
    std::shared_ptr<Collective> collective;
    if (env && env->world_size > 1) {
      collective = join_workers(*env, config.distributed, config.threads);
      config.threads = torch::get_num_threads();
    }
    const auto mode = progress_ == "bar"      ? ProgressMode::Bar
                      : progress_ == "lines"  ? ProgressMode::Lines
                      : progress_ == "silent" ? ProgressMode::Silent
                                              : ProgressMode::Auto;
    install_stop_signal_handlers();
    auto run = run_training(config, output_dir_, resume_, mode, collective);
    if (run.train.stop_signal != 0) {
      // The checkpoint of the last step is written: --resume continues it.
      if (!collective || collective->rank() == 0) {
        std::cerr << "contaccum train: stopped by " << strsignal(run.train.stop_signal) << " (signal "
                  << run.train.stop_signal << ") after step " << run.train.steps << " of this launch; checkpoint in "
                  << output_dir_ << "/checkpoints; continue with --resume\n";
      }
      return 128 + run.train.stop_signal;
    }
    // Every rank's peak resident memory, in rank order.
    auto peak = torch::tensor({peak_rss_mb()}, torch::kDouble);
    if (collective) peak = collective->all_gather(peak);
    if (collective && collective->rank() != 0) return 0;  // rank 0 reports
    nlohmann::json j = {
        {"output", output_dir_},
        {"steps", run.train.steps},
        {"parameters", run.parameters},
        {"train_seconds", run.train.seconds},
        {"peak_rss_mb", std::vector<double>(peak.data_ptr<double>(), peak.data_ptr<double>() + peak.numel())}};
    if (run.dev) j["dev"] = nlohmann::json::parse(run.dev->to_json());
    std::cout << j.dump() << std::endl;
    return 0;
  }

 private:
  std::string config_path_, output_dir_, progress_ = "auto", device_;
  std::vector<std::string> overrides_;
  bool resume_ = false, list_keys_ = false;
  int64_t nproc_ = 1;
};

}  // namespace

std::unique_ptr<Command> train_command() { return std::make_unique<TrainCommand>(); }

}  // namespace contaccum::cli
