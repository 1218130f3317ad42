#include "contaccum/model/dual_encoder.h"

#include <zlib.h>

#include "contaccum/core/unit_rows.h"

namespace contaccum {

DualEncoderImpl::DualEncoderImpl(std::shared_ptr<EncoderModule> query_encoder,
                                 std::shared_ptr<EncoderModule> passage_encoder, DualEncoderOptions options)
    : options_(options), query_encoder_(std::move(query_encoder)), passage_encoder_(std::move(passage_encoder)) {
  TORCH_CHECK(query_encoder_ != nullptr, "DualEncoder: query_encoder must not be null");
  TORCH_CHECK(passage_encoder_ != nullptr, "DualEncoder: passage_encoder must not be null");
  TORCH_CHECK(query_encoder_->output_dim() == passage_encoder_->output_dim(), "DualEncoder: query_encoder output_dim (",
              query_encoder_->output_dim(), ") must equal passage_encoder output_dim (", passage_encoder_->output_dim(),
              ")");
  if (shared()) {
    register_module("encoder", query_encoder_);
  } else {
    register_module("query_encoder", query_encoder_);
    register_module("passage_encoder", passage_encoder_);
  }
}

DualEncoderImpl::DualEncoderImpl(std::shared_ptr<EncoderModule> shared_encoder, DualEncoderOptions options)
    : DualEncoderImpl(shared_encoder, shared_encoder, options) {}

torch::Device DualEncoderImpl::device() const {
  for (const auto& p : parameters()) return p.device();
  return torch::kCPU;
}

torch::Tensor DualEncoderImpl::finish(torch::Tensor reps, int64_t rows, const char* side) const {
  TORCH_CHECK(reps.dim() == 2 && reps.size(0) == rows && reps.size(1) == dim(), "DualEncoder: the ", side,
              " encoder must return [", rows, ", ", dim(), "], got ", reps.sizes());
  TORCH_CHECK(reps.is_floating_point(), "DualEncoder: the ", side,
              " encoder must return floating-point representations, got ", reps.scalar_type());
  // F.normalize's arithmetic (the same bits), with the fused backward pass.
  if (options_.normalize()) reps = unit_rows(reps);
  return reps;
}

torch::Tensor DualEncoderImpl::encode_queries(const EncoderInput& queries) {
  const int64_t rows = queries.size();
  return finish(query_encoder_->forward(queries.to(device())), rows, "query");
}

torch::Tensor DualEncoderImpl::encode_passages(const EncoderInput& passages) {
  const int64_t rows = passages.size();
  return finish(passage_encoder_->forward(passages.to(device())), rows, "passage");
}

uint32_t weights_crc32(const torch::nn::Module& module) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto add = [&crc](const std::string& name, const torch::Tensor& t) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(name.data()), static_cast<uInt>(name.size()));
    for (const auto size : t.sizes()) crc = crc32(crc, reinterpret_cast<const Bytef*>(&size), sizeof size);
    const auto bytes = t.detach().to(torch::kCPU).contiguous();
    const auto* data = static_cast<const Bytef*>(bytes.data_ptr());
    // zlib takes at most 4 GiB a call.
    for (uint64_t done = 0, total = bytes.nbytes(); done < total;) {
      const auto part = static_cast<uInt>(std::min<uint64_t>(total - done, uint64_t{1} << 30));
      crc = crc32(crc, data + done, part);
      done += part;
    }
  };
  for (const auto& p : module.named_parameters()) add(p.key(), p.value());
  for (const auto& b : module.named_buffers()) add(b.key(), b.value());
  return static_cast<uint32_t>(crc);
}

}  // namespace contaccum
