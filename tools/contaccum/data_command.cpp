// contaccum data debian --translation Translation-en --output DIR
// contaccum data synthetic --output DIR
#include "cli_checks.h"
#include "command.h"

#include <contaccum/contaccum.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

namespace contaccum::cli {
namespace {

class DataCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("data", "make a BEIR-layout data set");
    app_->require_subcommand(1);
    add_debian();
    add_synthetic();
  }

  int run() override {
    // The library replaces whatever is at the path; the command replaces
    // only a data set (a mistyped --output must not take other files).
    check_replaceable_directory(output_,
                                {"a data set directory (no corpus.jsonl or qrels/ in it)", [](const std::string& dir) {
                                   return std::filesystem::exists(std::filesystem::path(dir) / "corpus.jsonl") ||
                                          std::filesystem::is_directory(std::filesystem::path(dir) / "qrels");
                                 }});
    return debian_->parsed() ? run_debian() : run_synthetic();
  }

 private:
  void add_debian() {
    debian_ = app_->add_subcommand("debian", "from Debian's package descriptions (a Translation-en file)");
    debian_
        ->add_option("--translation", translation_, "plain-text Translation-en (scripts/fetch-debian-descriptions.sh)")
        ->required()
        ->check(CLI::ExistingFile);
    debian_->add_option("--output", output_, "output directory (replaced atomically)")->required();
    debian_->add_option("--seed", seed_, "seed of the train/dev split")->check(cli::non_negative());
    debian_->add_option("--dev-queries", dev_queries_, "dev queries")->check(cli::non_negative());
    debian_->add_option("--reserved-queries", reserved_queries_, "queries held out and not written (a test split)")
        ->check(cli::non_negative());
    debian_->add_option("--max-train-queries", max_train_queries_, "at most this many training queries (-1: all)");
  }

  void add_synthetic() {
    auto* s = app_->add_subcommand("synthetic", "a generated data set (no download needed)");
    s->add_option("--output", output_, "output directory (replaced atomically)")->required();
    s->add_option("--seed", synthetic_seed_, "seed")->check(cli::non_negative());
    // At most 10 million of each: a synthetic set is held in memory whole
    // (about 100 bytes a passage), and a typo must not exhaust it.
    s->add_option("--passages", passages_, "passages")->check(cli::number_in(1, 1e7));
    s->add_option("--train-queries", train_queries_, "training queries")->check(cli::number_in(1, 1e7));
    s->add_option("--dev-queries", synthetic_dev_queries_, "dev queries")->check(cli::number_in(1, 1e7));
  }

  int run_debian() {
    ReadReport report;
    auto descriptions = read_debian_descriptions(translation_, ReaderOptions(), &report);
    auto summary = build_debian_dataset(descriptions, output_,
                                        DebianDatasetOptions()
                                            .seed(static_cast<uint64_t>(seed_))
                                            .dev_queries(dev_queries_)
                                            .reserved_queries(reserved_queries_)
                                            .max_train_queries(max_train_queries_));
    nlohmann::json j = {{"output", output_},
                        {"packages", summary.packages},
                        {"dropped_duplicate", summary.dropped_duplicate},
                        {"dropped_too_short", summary.dropped_too_short},
                        {"corpus", summary.kept},
                        {"train", summary.train},
                        {"dev", summary.dev},
                        {"reserved", summary.reserved}};
    std::cout << j.dump() << std::endl;
    return 0;
  }

  int run_synthetic() {
    build_synthetic_dataset(output_, SyntheticDatasetOptions()
                                         .seed(static_cast<uint64_t>(synthetic_seed_))
                                         .passages(passages_)
                                         .train_queries(train_queries_)
                                         .dev_queries(synthetic_dev_queries_));
    nlohmann::json j = {
        {"output", output_}, {"corpus", passages_}, {"train", train_queries_}, {"dev", synthetic_dev_queries_}};
    std::cout << j.dump() << std::endl;
    return 0;
  }

  CLI::App* debian_ = nullptr;
  std::string translation_, output_;
  int64_t seed_ = 13, dev_queries_ = 2000, reserved_queries_ = 5000, max_train_queries_ = -1;
  int64_t synthetic_seed_ = 13, passages_ = SyntheticDatasetOptions().passages(),
          train_queries_ = SyntheticDatasetOptions().train_queries(),
          synthetic_dev_queries_ = SyntheticDatasetOptions().dev_queries();
};

}  // namespace

std::unique_ptr<Command> data_command() { return std::make_unique<DataCommand>(); }

}  // namespace contaccum::cli
