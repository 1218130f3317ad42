// contaccum train --config FILE.yaml [--set key=value ...] --output DIR [--resume]
#include "command.h"

#include <contaccum/contaccum.h>

#include <nlohmann/json.hpp>

#include <iostream>

namespace contaccum::cli {
namespace {

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
    app_->add_flag("--list-keys", list_keys_, "print every config key with its default and exit");
  }

  int run() override {
    if (list_keys_) {
      std::cout << TrainConfig().to_yaml();
      return 0;
    }
    if (config_path_.empty() || output_dir_.empty()) {
      std::cerr << "contaccum train: --config and --output are required\n";
      return 2;
    }
    auto config = TrainConfig::load(config_path_, overrides_);
    const auto mode = progress_ == "bar"      ? ProgressMode::Bar
                      : progress_ == "lines"  ? ProgressMode::Lines
                      : progress_ == "silent" ? ProgressMode::Silent
                                              : ProgressMode::Auto;
    auto run = run_training(config, output_dir_, resume_, mode);
    nlohmann::json j = {{"output", output_dir_}, {"steps", run.train.steps}, {"train_seconds", run.train.seconds}};
    if (run.dev) j["dev"] = nlohmann::json::parse(run.dev->to_json());
    std::cout << j.dump() << std::endl;
    return 0;
  }

 private:
  std::string config_path_, output_dir_, progress_ = "auto";
  std::vector<std::string> overrides_;
  bool resume_ = false, list_keys_ = false;
};

}  // namespace

std::unique_ptr<Command> train_command() { return std::make_unique<TrainCommand>(); }

}  // namespace contaccum::cli
