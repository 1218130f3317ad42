#pragma once

#include "contaccum/encoders/encoder.h"

#include <torch/arg.h>

#include <string>
#include <vector>

namespace contaccum {
namespace testing {

/// Options of `check_encoder`.
struct EncoderCheckOptions {
  /// Largest allowed |difference| between two passes that must agree.
  /// Default: 0 (bit-identical, as GradCache needs on one device).
  TORCH_ARG(double, tolerance) = 0.0;
  /// Seed of the random output weights used for the gradient check.
  /// Default: 1234.
  TORCH_ARG(uint64_t, seed) = 1234;
};

/// Outcome of `check_encoder`: empty `failures` means every check passed.
struct EncoderCheckReport {
  std::vector<std::string> failures;
  bool ok() const { return failures.empty(); }
  /// All failures, one per line.
  std::string message() const;
};

/// Checks that `encoder` is safe to train with every strategy, on `sample`
/// (a batch of at least one row):
/// - output is `[sample.size(), output_dim()]`, floating point, finite, on
///   the device of the encoder's parameters;
/// - a random linear function of the output puts a non-zero gradient on every
///   parameter that requires one;
/// - in training mode, two passes started from the same random generator
///   state agree (GradCache's replay), and in eval mode two passes agree.
/// The encoder's training mode and gradients are left as they were.
///
/// ```
/// auto report = contaccum::testing::check_encoder(*my_encoder, sample);
/// EXPECT_TRUE(report.ok()) << report.message();
/// ```
EncoderCheckReport check_encoder(EncoderModule& encoder, const EncoderInput& sample,
                                 const EncoderCheckOptions& options = {});

}  // namespace testing
}  // namespace contaccum
