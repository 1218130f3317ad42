#include "contaccum/core/helper_thread.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#ifdef __linux__
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "contaccum/core/compute_threads.h"

namespace contaccum {
namespace {

// Where the calling thread runs now; -1 where that cannot be known.
int current_cpu() {
#ifdef __linux__
  return sched_getcpu();
#else
  return -1;
#endif
}

// The library's one helper thread (helper_thread.h). It waits for work the
// way OpenBLAS's own worker does: after each call it keeps polling for the
// next one for a while (kSpinSeconds), yielding the core between polls, and
// only then sleeps. A helper woken from sleep would be queued behind the
// busy calling thread (the other core never looks idle: OpenBLAS's worker
// spins there between the encoder's products), and a product would run on
// one core; a polling one yields to that worker and takes the core as soon
// as a product is posted. It stays for the process's life (never joined:
// like OpenBLAS's pool, it is simply gone at exit).
//
// Polling is not enough on its own: the scheduler may leave the helper on
// the caller's own core (the other cores look busy, OpenBLAS's worker polls
// there), where it runs only when the caller's time slice ends, long after
// the product. Measured on a 2-core virtual machine: in two runs of three
// the helper computed a fifth to a quarter of the pieces and the short
// products ran at one core's rate. So the caller, when it finds the helper last ran
// on its own core, confines the helper to the other cores it may use
// (`keep_off`): one system call, rarely (0 to 5 times in bench/banks'
// products alone there, 31 times in its ~300 whole steps).
class HelperThread {
 public:
  static HelperThread& instance() {
    static HelperThread* helper = new HelperThread();  // leaked on purpose, see above
    return *helper;
  }

  // Runs work(c) for every c in [0, chunks) on the calling thread and the
  // helper, each taking the next chunk until none is left; false (nothing
  // run) when another thread is using the helper. The caller never waits for
  // the helper to start, only for a chunk it took to finish.
  bool run(int64_t chunks, const std::function<void(int64_t)>& work) {
    std::unique_lock<std::mutex> in_use(in_use_, std::try_to_lock);
    if (!in_use.owns_lock()) return false;
    keep_off(current_cpu());
    pieces_.fetch_add(chunks, std::memory_order_acq_rel);
    chunks_ = chunks;
    work_ = &work;
    next_.store(0, std::memory_order_relaxed);
    state_.store(kOpen, std::memory_order_release);
    posted_.fetch_add(1, std::memory_order_acq_rel);
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      if (sleeping_) wake_.notify_one();
    }
    drain();
    int open = kOpen;
    if (!state_.compare_exchange_strong(open, kClosed, std::memory_order_acq_rel)) {
      while (state_.load(std::memory_order_acquire) != kDone) std::this_thread::yield();
    }
    // Both threads have stopped: a chunk's error is the caller's now.
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> lock(error_mutex_);
      std::swap(error, error_);
    }
    if (error) std::rethrow_exception(error);
    return true;
  }

  HelperThreadStats stats() const {
    HelperThreadStats s;
    s.thread_id = thread_id_.load(std::memory_order_acquire);
    s.calls = posted_.load(std::memory_order_acquire);
    s.pieces = pieces_.load(std::memory_order_acquire);
    s.helper_pieces = helper_pieces_.load(std::memory_order_acquire);
    s.moves = moves_.load(std::memory_order_acquire);
    return s;
  }

 private:
  static constexpr int kOpen = 0, kJoined = 1, kDone = 2, kClosed = 3;
  static constexpr double kSpinSeconds = 0.1;

  HelperThread() {
    std::thread([this] { loop(); }).detach();
  }

  // Confines the helper to the cores it was started with but the caller's,
  // when the helper last ran on the caller's (nothing where it was started
  // with that core alone, or off Linux).
  void keep_off(int caller_cpu) {
#ifdef __linux__
    const auto tid = static_cast<pid_t>(thread_id_.load(std::memory_order_acquire));
    if (caller_cpu < 0 || tid <= 0 || helper_cpu_.load(std::memory_order_relaxed) != caller_cpu) return;
    cpu_set_t others = started_with_;
    CPU_CLR(caller_cpu, &others);
    if (CPU_COUNT(&others) == 0 || sched_setaffinity(tid, sizeof(others), &others) != 0) return;
    helper_cpu_.store(-1, std::memory_order_relaxed);
    moves_.fetch_add(1, std::memory_order_acq_rel);
#else
    (void)caller_cpu;
#endif
  }

  int64_t drain() {
    int64_t done = 0;
    for (int64_t c = next_.fetch_add(1); c < chunks_; c = next_.fetch_add(1), ++done) {
      try {
        (*work_)(c);
      } catch (...) {
        // The first error stops the handing out of chunks; `run` rethrows
        // it on the caller once both threads have stopped.
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(chunks_, std::memory_order_relaxed);
      }
    }
    return done;
  }

  void loop() {
#ifdef __linux__
    // The cores it may use: those of the thread that started it.
    CPU_ZERO(&started_with_);
    sched_getaffinity(0, sizeof(started_with_), &started_with_);
    thread_id_.store(static_cast<int64_t>(syscall(SYS_gettid)), std::memory_order_release);
#endif
    uint64_t seen = posted_.load(std::memory_order_acquire);
    auto last = std::chrono::steady_clock::now();
    for (;;) {
      helper_cpu_.store(current_cpu(), std::memory_order_relaxed);
      const uint64_t posted = posted_.load(std::memory_order_acquire);
      if (posted != seen) {
        seen = posted;
        int open = kOpen;
        if (state_.compare_exchange_strong(open, kJoined, std::memory_order_acq_rel)) {
          helper_pieces_.fetch_add(drain(), std::memory_order_acq_rel);
          state_.store(kDone, std::memory_order_release);
        }
        last = std::chrono::steady_clock::now();
      } else if (std::chrono::duration<double>(std::chrono::steady_clock::now() - last).count() < kSpinSeconds) {
        std::this_thread::yield();
      } else {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleeping_ = true;
        wake_.wait(lock, [&] { return posted_.load(std::memory_order_acquire) != seen; });
        sleeping_ = false;
        last = std::chrono::steady_clock::now();
      }
    }
  }

  std::mutex in_use_;
  int64_t chunks_ = 0;
  const std::function<void(int64_t)>* work_ = nullptr;
  std::atomic<int64_t> next_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::atomic<int> state_{kClosed};
  std::atomic<uint64_t> posted_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  bool sleeping_ = false;
  std::atomic<int64_t> thread_id_{0};  // published after started_with_
#ifdef __linux__
  cpu_set_t started_with_;
#endif
  std::atomic<int> helper_cpu_{-1};
  std::atomic<int64_t> pieces_{0}, helper_pieces_{0};
  std::atomic<int64_t> moves_{0};
};

}  // namespace

int helper_threads() {
  const int blas = blas_threads();
  const int wanted = blas > 0 ? blas : at::get_num_threads();
  return std::max(1, std::min(wanted, 2));
}

void share_out(int64_t chunks, const std::function<void(int64_t)>& work) {
  // A call from inside a chunk runs on its own thread alone: the helper is
  // busy with the outer call (and its lock is held by this thread).
  static thread_local bool inside = false;
  if (!inside && std::min<int64_t>(helper_threads(), chunks) > 1) {
    struct Entered {
      Entered() { inside = true; }
      ~Entered() { inside = false; }
    } entered;
    if (HelperThread::instance().run(chunks, work)) return;
  }
  for (int64_t c = 0; c < chunks; ++c) work(c);
}

void share_out_ranges(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& work) {
  TORCH_CHECK(grain > 0, "share_out_ranges: grain must be > 0, got ", grain);
  if (n <= 0) return;
  share_out((n + grain - 1) / grain, [&](int64_t c) { work(c * grain, std::min(n, (c + 1) * grain)); });
}

HelperThreadStats helper_thread_stats() { return HelperThread::instance().stats(); }

}  // namespace contaccum
