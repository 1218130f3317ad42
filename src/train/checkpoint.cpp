#include "contaccum/train/checkpoint.h"

#include "contaccum/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <system_error>

namespace fs = std::filesystem;

namespace contaccum {

void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path) {
  // Through a callback, not by file name: LibTorch's own file writer throws
  // from a destructor when the disk is full, which no caller can catch.
  write_atomically_through(path, [&](const ByteSink& sink) { archive.save_to(sink); });
}

namespace {
void load_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& what,
                  const std::string& prefix) {
  torch::NoGradGuard no_grad;
  auto read = [&](const std::string& name, torch::Tensor& into, bool is_buffer) {
    torch::Tensor saved;
    TORCH_CHECK(archive.try_read(name, saved, is_buffer), what, ": no tensor '", prefix + name,
                "' (saved from another kind of model?)");
    TORCH_CHECK(saved.sizes() == into.sizes() && saved.scalar_type() == into.scalar_type(), what, ": '", prefix + name,
                "' is ", saved.sizes(), " ", saved.scalar_type(), " but this model's is ", into.sizes(), " ",
                into.scalar_type(), " (the config, the vocabulary or the model does not match the weights)");
    TORCH_CHECK(torch::isfinite(saved).all().item<bool>(), what, ": '", prefix + name, "' holds a NaN or an infinity");
    into.copy_(saved);
  };
  for (auto& p : module.named_parameters(/*recurse=*/false)) read(p.key(), p.value(), false);
  for (auto& b : module.named_buffers(/*recurse=*/false)) read(b.key(), b.value(), true);
  for (const auto& child : module.named_children()) {
    torch::serialize::InputArchive sub;
    TORCH_CHECK(archive.try_read(child.key(), sub), what, ": no module '", prefix + child.key(), "'");
    load_checked(*child.value(), sub, what, prefix + child.key() + ".");
  }
}
}  // namespace

void load_module_checked(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& what) {
  load_checked(module, archive, what, "");
}

CheckpointManager::CheckpointManager(std::string directory, int64_t keep_last)
    : directory_(std::move(directory)), keep_last_(keep_last) {
  TORCH_CHECK(!directory_.empty(), "CheckpointManager: directory must not be empty");
  TORCH_CHECK(keep_last >= 1, "CheckpointManager: keep_last must be >= 1, got ", keep_last);
}

std::string CheckpointManager::path_of(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof(name), "step-%09lld.pt", static_cast<long long>(step));
  return (fs::path(directory_) / name).string();
}

std::string CheckpointManager::save(int64_t step, const std::function<void(torch::serialize::OutputArchive&)>& write) {
  TORCH_CHECK(step >= 0, "CheckpointManager::save: step must be >= 0, got ", step);
  torch::serialize::OutputArchive archive;
  write(archive);
  const auto path = path_of(step);
  save_archive_atomically(archive, path);
  auto all = list();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
  return path;
}

std::vector<std::string> CheckpointManager::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(directory_, ec)) return out;
  static const std::regex name("step-[0-9]{9,}\\.pt");
  for (const auto& entry : fs::directory_iterator(directory_, ec)) {
    if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), name)) {
      out.push_back(entry.path().string());
    }
  }
  // Zero-padded names sort by step; longer names are larger steps.
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  return out;
}

std::optional<std::string> CheckpointManager::latest() const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back();
}

}  // namespace contaccum
