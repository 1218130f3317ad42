#pragma once

// GradAccum's tower with one part of what the banks cost added, and nothing
// else of them: the controls beside which the bank bench tells ContAccum's
// own work from what any exact method pays (steps.cpp).

#include <contaccum/contaccum.h>

#include <torch/torch.h>

#include <cstdint>
#include <memory>

namespace contaccum::bench {

// A tower that, after encoding a micro-batch's passages (where ContAccum's
// loss next works with its banks), calls `after_passages()`.
class AfterPassagesTower : public EncoderModule {
 public:
  AfterPassagesTower(std::shared_ptr<EncoderModule> inner, int64_t passage_length);
  torch::Tensor forward(const EncoderInput& input) override;
  int64_t output_dim() const override;
  virtual void after_passages() = 0;

 private:
  std::shared_ptr<EncoderModule> inner_;
  int64_t passage_length_;
};

// The banks' bytes without their arithmetic: reads two buffers the size of
// a query bank and a passage bank of m rows, one add per float, both threads
// sharing the sweep. Every exact method reads every bank row once per
// micro-batch; GradAccum with this tower, against GradAccum alone, is what
// that read costs in whole steps (the towers' data it evicts included)
// beyond the sweep's own time warm.
class BankBytesTower final : public AfterPassagesTower {
 public:
  BankBytesTower(std::shared_ptr<EncoderModule> inner, int64_t m, int64_t d, int64_t passage_length);
  void after_passages() override { sweep(); }
  // Reads the buffers once; returns their sum (so that the reads are not
  // optimised away).
  float sweep();

 private:
  torch::Tensor bytes_;
  float sink_ = 0;
};

// The banks' products without the rest of the loss: the four products
// ContAccum's loss makes a micro-batch of n rows against banks of m rows,
// with the library's kernels (short_products.h) on buffers of those shapes
// and unit rows: the rows' scores against the passage bank and the banked
// queries' against the passages (row_dots_out, scaled by 1 / 0.05 as the
// loss's are), and the two gradient products (add_weighted_rows_, into
// buffers set to zero first, as the loss's are). Every exact method makes
// them; GradAccum with this tower, against GradAccum alone and less the same
// products timed alone in that round (its floor), is what making them
// inside whole steps costs beyond their arithmetic: banks read cold after
// the towers, the towers' data they evict.
class BankProductsTower final : public AfterPassagesTower {
 public:
  BankProductsTower(std::shared_ptr<EncoderModule> inner, int64_t n, int64_t m, int64_t d, int64_t passage_length);
  void after_passages() override;
  // The seconds its products have taken so far, as short_product_stats
  // times them (a step's split moves them out of the towers' time).
  double seconds() const { return seconds_; }

 private:
  double seconds_ = 0;
  torch::Tensor rows_, passages_, query_bank_, passage_bank_;
  torch::Tensor scores_, bank_scores_, row_gradient_, passage_gradient_;
};

}  // namespace contaccum::bench
