#pragma once
// One subcommand of the `contaccum` command line: `add` declares it and its
// options, `run` does its work once the command line is parsed.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace contaccum::cli {

class Command {
 public:
  virtual ~Command() = default;
  /// Declares the subcommand and its options under `parent`.
  virtual void add(CLI::App& parent) = 0;
  /// Does the subcommand's work; returns the exit status. Errors are thrown.
  virtual int run() = 0;
  /// True when the command line chose this subcommand.
  bool chosen() const { return app_ != nullptr && app_->parsed(); }

 protected:
  CLI::App* app_ = nullptr;
};

/// The process's command line as `main` received it.
const std::vector<std::string>& command_line();
void set_command_line(int argc, char** argv);

std::unique_ptr<Command> train_command();
std::unique_ptr<Command> eval_command();
std::unique_ptr<Command> bm25_command();
std::unique_ptr<Command> data_command();
std::unique_ptr<Command> encode_command();
std::unique_ptr<Command> search_command();
std::unique_ptr<Command> index_command();

}  // namespace contaccum::cli
