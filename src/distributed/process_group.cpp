#include "contaccum/distributed/process_group.h"

#include "contaccum/core/error_text.h"

#include "backend/backends.h"
#include "contaccum/core/torch_compat.h"
#include "process_group_collective.h"

#include <torch/cuda.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <thread>

namespace contaccum {

const OptionTable<DistributedOptions>& DistributedOptions::fields() {
  using O = DistributedOptions;
  // None of them changes the numbers: data parallelism is exact.
  static const OptionTable<O> table = {
      option_field<O>("backend", "auto, gloo or nccl", CONTACCUM_OPTION_ACCESSORS(backend),
                      one_of({"auto", "gloo", "nccl"}), false),
      option_field<O>("timeout", "seconds a collective waits for the other ranks",
                      CONTACCUM_OPTION_ACCESSORS(timeout_seconds), noted(greater_than(0), "seconds"), false),
      option_field<O>("bucket_bytes", "bytes per gradient all-reduce bucket", CONTACCUM_OPTION_ACCESSORS(bucket_bytes),
                      greater_than(0), false),
      option_field<O>("sparse_rows", "sum gradients without the rows that are zero on every rank",
                      CONTACCUM_OPTION_ACCESSORS(sparse_rows), {}, false),
  };
  return table;
}

void DistributedOptions::validate() const { check_option_fields(*this, fields(), "distributed"); }

namespace {

std::optional<std::string> variable(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

int64_t integer_variable(const char* name, int64_t fallback, int64_t low, int64_t high) {
  const auto text = variable(name);
  if (!text) return fallback;
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TORCH_CHECK(used == text->size() && !text->empty(), "environment variable ", name, " must be an integer, got '",
              *text, "'");
  TORCH_CHECK(value >= low && value <= high, "environment variable ", name, " must be in [", low, ", ", high, "], got ",
              value);
  return value;
}

std::chrono::milliseconds timeout_of(const DistributedOptions& options) {
  return std::chrono::milliseconds(static_cast<int64_t>(options.timeout_seconds() * 1000.0));
}

c10::intrusive_ptr<c10d::ProcessGroup> make_group(const c10::intrusive_ptr<c10d::Store>& store, int64_t rank,
                                                  int64_t world, const DistributedOptions& options) {
  const bool nccl =
      options.backend() == "nccl" || (options.backend() == "auto" && nccl_available() && torch::cuda::is_available());
  return nccl ? detail::make_nccl_group(store, rank, world, options)
              : detail::make_gloo_group(store, rank, world, options);
}

}  // namespace

std::optional<DistributedEnvironment> DistributedEnvironment::from_environment() {
  if (!variable("WORLD_SIZE")) return std::nullopt;
  DistributedEnvironment env;
  env.world_size = integer_variable("WORLD_SIZE", 1, 1, 1 << 20);
  env.rank = integer_variable("RANK", -1, 0, env.world_size - 1);
  TORCH_CHECK(env.rank >= 0, "environment variable RANK must be set when WORLD_SIZE is (WORLD_SIZE = ", env.world_size,
              ")");
  env.local_world_size = integer_variable("LOCAL_WORLD_SIZE", 1, 1, env.world_size);
  env.local_rank = integer_variable("LOCAL_RANK", 0, 0, env.world_size - 1);
  env.master_addr = variable("MASTER_ADDR").value_or("127.0.0.1");
  TORCH_CHECK(!env.master_addr.empty(), "environment variable MASTER_ADDR must not be empty");
  env.master_port = integer_variable("MASTER_PORT", 29500, 1, 65535);
  env.launcher_hosts_store = variable("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
  return env;
}

std::shared_ptr<Collective> init_process_group(const DistributedEnvironment& env, const DistributedOptions& options) {
  options.validate();
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0 && !env.launcher_hosts_store;
  store_options.numWorkers = static_cast<size_t>(env.world_size);
  store_options.waitWorkers = false;
  detail::use_classic_tcp_store(store_options);
  store_options.timeout = timeout_of(options);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", env.rank, " of ", env.world_size, ": cannot reach the rendezvous store at ",
                env.master_addr, ":", env.master_port, ": ", error_text(e));
  }
  // One prefix per run keeps a shared (launcher's) store's keys apart.
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("contaccum", store);
  try {
    return std::make_shared<detail::ProcessGroupCollective>(make_group(prefixed, env.rank, env.world_size, options),
                                                            options);
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", env.rank, " of ", env.world_size, ": cannot join the process group at ",
                env.master_addr, ":", env.master_port, " within distributed.timeout = ", options.timeout_seconds(),
                " s: ", error_text(e));
  }
}

std::vector<std::shared_ptr<Collective>> make_in_process_group(int64_t world_size, const DistributedOptions& options) {
  options.validate();
  TORCH_CHECK(world_size >= 1, "make_in_process_group: world_size must be >= 1, got ", world_size);
  DistributedOptions gloo = options;
  gloo.backend("gloo");
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::shared_ptr<Collective>> out(static_cast<size_t>(world_size));
  std::vector<std::exception_ptr> errors(out.size());
  // Each rank's group connects to the others while constructed: all at once.
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      try {
        out[static_cast<size_t>(r)] =
            std::make_shared<detail::ProcessGroupCollective>(detail::make_gloo_group(store, r, world_size, gloo), gloo);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return out;
}

}  // namespace contaccum
