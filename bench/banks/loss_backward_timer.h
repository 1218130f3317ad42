#pragma once

// The loss's backward pass timed inside whole steps from outside the
// library: a RecordFunction observer on the autograd node of the tiled
// InfoNCE loss (LibTorch names a C++ Function's node by its type, which holds
// "TiledInfoNCE"), with the short products' time inside it (short_product_stats
// at the node's start and end). LibTorch runs a CPU graph's backward pass on
// the thread that calls it, so the observer is that thread's alone, for the
// timer's scope. Its bookkeeping costs every operator call a little, so the
// bank bench times its split rounds apart from the timed ones.

#include <contaccum/contaccum.h>

#include <ATen/record_function.h>

#include <cstring>
#include <memory>

namespace contaccum::bench {

class LossBackwardTimer {
 public:
  LossBackwardTimer() : outer_(current()) {
    current() = this;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&started, &ended).scopes({at::RecordScope::BACKWARD_FUNCTION}));
  }
  ~LossBackwardTimer() {
    at::removeCallback(handle_);
    current() = outer_;
  }
  LossBackwardTimer(const LossBackwardTimer&) = delete;
  LossBackwardTimer& operator=(const LossBackwardTimer&) = delete;

  double seconds = 0.0, product_seconds = 0.0;  // the loss's backward passes, and the products in them
  int64_t calls = 0;

 private:
  struct Started : at::ObserverContext {
    Stopwatch watch;
    double products = short_product_stats().seconds;
  };
  static LossBackwardTimer*& current() {
    static thread_local LossBackwardTimer* timer = nullptr;
    return timer;
  }
  static std::unique_ptr<at::ObserverContext> started(const at::RecordFunction& fn) {
    if (!current() || !std::strstr(fn.name(), "TiledInfoNCE")) return nullptr;
    return std::make_unique<Started>();
  }
  static void ended(const at::RecordFunction&, at::ObserverContext* context) {
    auto* start = static_cast<Started*>(context);
    if (!start || !current()) return;
    current()->seconds += start->watch.seconds();
    current()->product_seconds += short_product_stats().seconds - start->products;
    ++current()->calls;
  }

  LossBackwardTimer* outer_;
  at::CallbackHandle handle_ = 0;
};

}  // namespace contaccum::bench
