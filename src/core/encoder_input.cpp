#include "contaccum/core/encoder_input.h"

#include <c10/util/Exception.h>

namespace contaccum {

int64_t EncoderInput::size() const {
  int64_t rows = -1;
  auto check = [&rows](const torch::Tensor& t, const std::string& name) {
    if (!t.defined()) return;
    TORCH_CHECK(t.dim() >= 1, "EncoderInput::", name, " must have a batch dimension, got a scalar");
    if (rows < 0) {
      rows = t.size(0);
    } else {
      TORCH_CHECK(t.size(0) == rows, "EncoderInput::", name, " has ", t.size(0), " rows, but the other inputs have ",
                  rows);
    }
  };
  check(input_ids, "input_ids");
  check(attention_mask, "attention_mask");
  for (const auto& kv : extras) check(kv.second, "extras[\"" + kv.first + "\"]");
  TORCH_CHECK(rows >= 0, "EncoderInput holds no tensor");
  return rows;
}

EncoderInput EncoderInput::slice(int64_t begin, int64_t end) const {
  const int64_t rows = size();
  TORCH_CHECK(0 <= begin && begin <= end && end <= rows, "EncoderInput::slice range [", begin, ", ", end,
              ") is outside [0, ", rows, ")");
  auto cut = [&](const torch::Tensor& t) { return t.defined() ? t.slice(0, begin, end) : t; };
  EncoderInput out;
  out.input_ids = cut(input_ids);
  out.attention_mask = cut(attention_mask);
  for (const auto& kv : extras) out.extras.emplace(kv.first, cut(kv.second));
  return out;
}

EncoderInput EncoderInput::to(const torch::Device& device) const {
  // Pinned host rows go to a GPU without blocking the host (the copy is
  // ordered on the device's stream before any kernel that reads it).
  auto move = [&](const torch::Tensor& t) {
    return t.defined() ? t.to(device, /*non_blocking=*/device.is_cuda() && t.is_pinned()) : t;
  };
  EncoderInput out;
  out.input_ids = move(input_ids);
  out.attention_mask = move(attention_mask);
  for (const auto& kv : extras) out.extras.emplace(kv.first, move(kv.second));
  return out;
}

EncoderInput EncoderInput::pin_memory() const {
  auto pin = [](const torch::Tensor& t) { return t.defined() ? t.pin_memory() : t; };
  EncoderInput out;
  out.input_ids = pin(input_ids);
  out.attention_mask = pin(attention_mask);
  for (const auto& kv : extras) out.extras.emplace(kv.first, pin(kv.second));
  return out;
}

}  // namespace contaccum
