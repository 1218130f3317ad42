#include "contaccum/train/checkpoint.h"

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
namespace {

// A temporary name beside `path` (same file system, so rename is atomic) that
// no concurrent writer picks too.
std::string temporary_beside(const std::string& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), ".tmp-%d-%08llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(rng() & 0xffffffffULL));
  return path + suffix;
}

void ensure_parent(const std::string& path) {
  const auto parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  TORCH_CHECK(!ec, "cannot create directory ", parent.string(), ": ", ec.message());
}

void fsync_file(const std::string& path) {
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    ::fsync(fileno(f));
    std::fclose(f);
  }
}

void rename_into_place(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;  // the rename's error is the one to report
    fs::remove(tmp, ignored);
    TORCH_CHECK(false, "cannot move ", tmp, " to ", path, ": ", ec.message());
  }
}

}  // namespace

void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path) {
  ensure_parent(path);
  const auto tmp = temporary_beside(path);
  try {
    archive.save_to(tmp);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    TORCH_CHECK(false, "cannot write ", path, ": ", e.what());
  }
  fsync_file(tmp);
  rename_into_place(tmp, path);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  ensure_parent(path);
  const auto tmp = temporary_beside(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      TORCH_CHECK(false, "cannot write ", path);
    }
  }
  fsync_file(tmp);
  rename_into_place(tmp, path);
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
