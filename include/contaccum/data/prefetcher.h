#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace contaccum {

/// Runs a producer on a background thread and keeps up to `depth` of its
/// results ready, so that tokenization and collation overlap training.
///
/// The producer returns `std::nullopt` when it is done. An exception thrown
/// by the producer is rethrown by `next()`. The destructor stops the thread
/// (after the producer's current call returns).
template <typename T>
class Prefetcher {
 public:
  Prefetcher(std::function<std::optional<T>()> producer, size_t depth = 2)
      : producer_(std::move(producer)), depth_(depth == 0 ? 1 : depth), thread_([this] { run(); }) {}

  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// The next result in production order; `std::nullopt` once the producer is
  /// done.
  std::optional<T> next() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !ready_.empty() || done_; });
    if (!ready_.empty()) {
      T item = std::move(ready_.front());
      ready_.pop_front();
      changed_.notify_all();
      return item;
    }
    if (error_) std::rethrow_exception(error_);
    return std::nullopt;
  }

 private:
  void run() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return ready_.size() < depth_ || stop_; });
        if (stop_) break;
      }
      std::optional<T> item;
      try {
        item = producer_();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
        done_ = true;
        changed_.notify_all();
        return;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (!item) {
        done_ = true;
        changed_.notify_all();
        return;
      }
      ready_.push_back(std::move(*item));
      changed_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

  std::function<std::optional<T>()> producer_;
  size_t depth_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<T> ready_;
  bool stop_ = false, done_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace contaccum
