#include "contaccum/core/operator_calls.h"

#include <ATen/record_function.h>

namespace contaccum {
namespace {

// The counter of the call in progress on this thread. A nested call counts
// into its own counter (the outer one's observer serves it; the outer count
// misses those calls).
thread_local int64_t* current_counter = nullptr;

// Removes the observer and restores the outer counter on every exit path.
class CountingScope {
 public:
  explicit CountingScope(int64_t* counter) : outer_(current_counter) {
    current_counter = counter;
    if (outer_) return;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback([](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
          if (current_counter) ++*current_counter;
          return nullptr;
        }).scopes({at::RecordScope::FUNCTION}));
  }
  ~CountingScope() {
    if (!outer_) at::removeCallback(handle_);
    current_counter = outer_;
  }
  CountingScope(const CountingScope&) = delete;
  CountingScope& operator=(const CountingScope&) = delete;

 private:
  int64_t* outer_;
  at::CallbackHandle handle_ = 0;
};

}  // namespace

int64_t count_operator_calls(const std::function<void()>& f) {
  int64_t calls = 0;
  {
    const CountingScope scope(&calls);
    f();
  }
  return calls;
}

}  // namespace contaccum
