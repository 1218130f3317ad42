#pragma once

namespace contaccum {

/// Graceful stop on the signals a scheduler sends before it kills a job:
/// SIGTERM (SLURM at the time limit or on preemption, Kubernetes, `kill`),
/// SIGINT (Ctrl-C) and SIGUSR1 (SLURM's `--signal=USR1@SECONDS`).
///
/// After `install_stop_signal_handlers()` the first of them only records
/// itself; a `Trainer` reads it after each optimizer step (all ranks agree on
/// the step), writes a checkpoint and returns with `TrainResult::stop_signal`
/// set. A second one, of any of the three, ends the process at once (the
/// signal's default action) — unless it comes within a second of the first:
/// that is one request delivered twice (Ctrl-C reaches the launcher and its
/// workers, which the launcher then signals too; schedulers signal every
/// process of a job), and it is ignored. The CLI installs them for `train` and exits
/// with status 128 + the signal's number (143 for SIGTERM) once the
/// checkpoint is written; library users with their own `main` call it
/// themselves.
void install_stop_signal_handlers();

/// The stop signal received since the handlers were installed, 0 if none.
int stop_signal();

/// Forgets a received stop signal (a new run in the same process).
void clear_stop_signal();

}  // namespace contaccum
