#pragma once

#include "contaccum/core/option_table.h"

#include "contaccum/distributed/collective.h"

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace contaccum {

/// Options of the c10d-backed collectives (`init_process_group`,
/// `make_in_process_group`).
struct DistributedOptions {
  /// `gloo` (CPU tensors), `nccl` (one CUDA device per local rank; only where
  /// LibTorch is built with NCCL) or `auto`: NCCL when LibTorch has it and
  /// CUDA devices are visible, else Gloo. Default: "auto".
  TORCH_ARG(std::string, backend) = "auto";
  /// Seconds a collective (and the rendezvous) may wait for the other ranks
  /// before it fails: how long a hung or dead peer can stall this rank. Must
  /// be > 0. Default: 1800 (LibTorch's).
  TORCH_ARG(double, timeout_seconds) = 1800.0;
  /// Gradients are summed in flat buckets of at most this many bytes (one
  /// all-reduce per bucket, not one per tensor). Must be > 0. Default: 25 MiB
  /// (PyTorch DDP's).
  TORCH_ARG(int64_t, bucket_bytes) = int64_t{25} << 20;
  /// A CPU gradient of 2 or more dimensions and at least 64 rows is summed
  /// without the rows that are zero on every rank: the ranks first sum one
  /// flag per row, then only the rows some rank has nonzero travel (an
  /// embedding table's rows of the tokens no rank saw this step are zero on
  /// all of them). The sums are those of the whole tensors, bit for bit at 2
  /// ranks (at more, Gloo's ring may add a row's terms in another order).
  /// A tensor more than half of whose rows are nonzero somewhere goes whole.
  /// Default: true.
  TORCH_ARG(bool, sparse_rows) = true;

 public:
  /// Every field above, declared once (`OptionTable`).
  static const OptionTable<DistributedOptions>& fields();
  /// Throws, naming the option and its value, when an option is invalid.
  void validate() const;
};

/// Where this process sits in a multi-process run, as the launchers say it
/// in the environment: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
/// `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` (what `torchrun`,
/// `contaccum train --nproc-per-node` and the usual SLURM / `mpirun`
/// wrappers set).
struct DistributedEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  int64_t local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// The launcher hosts the `TCPStore` (`TORCHELASTIC_USE_AGENT_STORE=True`,
  /// as `torchrun` and `contaccum train --nproc-per-node` do); otherwise rank
  /// 0 hosts it.
  bool launcher_hosts_store = false;

  /// The environment's values, or nothing when `WORLD_SIZE` is unset. Throws
  /// naming the variable and its value when one is malformed or out of range
  /// (a `RANK` outside `[0, WORLD_SIZE)`, a port outside 1..65535, ...).
  static std::optional<DistributedEnvironment> from_environment();
};

/// Joins the process group described by `env` (rendezvous on the
/// `TCPStore` at `MASTER_ADDR:MASTER_PORT`) and returns its collective.
/// Blocks until every rank has joined or `timeout_seconds` pass; throws
/// naming the address and rank on failure.
std::shared_ptr<Collective> init_process_group(const DistributedEnvironment& env,
                                               const DistributedOptions& options = {});

/// `world_size` ranks in this process over one in-memory store (c10d's
/// `HashStore`) and Gloo: element `r` is rank `r`'s collective, to be used
/// from its own thread. For tests and single-machine experiments; the
/// collectives are the same c10d ones `init_process_group` gives.
std::vector<std::shared_ptr<Collective>> make_in_process_group(int64_t world_size,
                                                               const DistributedOptions& options = {});

/// Whether this LibTorch can run the NCCL backend.
bool nccl_available();

}  // namespace contaccum
