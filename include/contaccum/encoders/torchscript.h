#pragma once

#include "contaccum/encoders/encoder.h"

#include <torch/arg.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace torch {
namespace jit {
struct Module;
}  // namespace jit
}  // namespace torch

namespace contaccum {

/// How `TorchScriptEncoder` pools a `[batch, seq, hidden]` output of the
/// scripted module into `[batch, hidden]`.
enum class TorchScriptPooling {
  /// The first token's state ([CLS]).
  Cls,
  /// The mean of the states of the real tokens (attention mask 1; all tokens
  /// when the input has no mask).
  Mean,
};

/// Options of `TorchScriptEncoder`.
///
/// Example (a Python model exported with `torch.jit.script(model).save(path)`
/// whose `forward(input_ids, attention_mask, token_type_ids)` returns a tuple
/// `(last_hidden_state, pooled)`):
/// ```
/// TorchScriptEncoder enc(TorchScriptEncoderOptions("bert.pt", 768)
///                            .inputs({"input_ids", "attention_mask", "token_type_ids"})
///                            .output_index(0)
///                            .pooling(TorchScriptPooling::Cls));
/// ```
struct TorchScriptEncoderOptions {
  /// `path`: file written by `torch.jit.save`; `output_dim`: width of the
  /// representations the encoder returns.
  TorchScriptEncoderOptions(std::string path, int64_t output_dim) : path_(std::move(path)), output_dim_(output_dim) {}

  /// File written by `torch.jit.save` / `ScriptModule.save`. Required.
  TORCH_ARG(std::string, path);
  /// Width of the representations; every forward verifies the module's
  /// output against it. Required.
  TORCH_ARG(int64_t, output_dim);
  /// Arguments of the scripted method, passed positionally in this order, by
  /// name: "input_ids", "attention_mask" (all ones when the input has none),
  /// "token_type_ids" (from `EncoderInput::extras`, zeros when absent), or any
  /// other key of `EncoderInput::extras`. Default: {"input_ids",
  /// "attention_mask"}.
  TORCH_ARG(std::vector<std::string>, inputs) = std::vector<std::string>{"input_ids", "attention_mask"};
  /// Method to call. Default: "forward".
  TORCH_ARG(std::string, method) = "forward";
  /// Element to take when the method returns a tuple or a list. Default: 0.
  TORCH_ARG(int64_t, output_index) = 0;
  /// Key to take when the method returns a dict (required then). Default: ""
  /// (none).
  TORCH_ARG(std::string, output_key) = "";
  /// Pooling applied when the selected output is `[batch, seq, hidden]`.
  /// Default: `TorchScriptPooling::Cls`.
  TORCH_ARG(TorchScriptPooling, pooling) = TorchScriptPooling::Cls;
};

/// An encoder defined in Python and exported with TorchScript.
///
/// The scripted module's parameters and buffers become this module's, under
/// the same names (`embedding.weight`, ...) and sharing the same tensors, so
/// optimisers, `to()`, the dual encoder and checkpoints see them and
/// gradients flow into the scripted code; `train()`/`eval()` are forwarded to
/// the scripted module. Its dropout must draw from the global generators (as
/// `torch.nn.Dropout` does) for GradCache's replay; `check_encoder` verifies
/// this. Tensor attributes that are neither parameters nor buffers stay
/// where they were loaded (not moved by `to()`).
class TorchScriptEncoderImpl : public EncoderModule {
 public:
  /// Loads `options.path()` onto the CPU. Throws `c10::Error` naming the
  /// file when it is missing or not a TorchScript archive, when it lacks
  /// `options.method()`, or when `options.inputs()` is empty.
  explicit TorchScriptEncoderImpl(TorchScriptEncoderOptions options);
  ~TorchScriptEncoderImpl() override;

  /// Calls the scripted method on the inputs named by `options().inputs()`,
  /// selects and pools the output as the options say, and checks it is a
  /// floating-point `[input.size(), output_dim()]` tensor (else throws
  /// `c10::Error` naming the file and the shape).
  torch::Tensor forward(const EncoderInput& input) override;
  /// `options().output_dim()`.
  int64_t output_dim() const override { return options_.output_dim(); }
  /// Sets training mode here and in the scripted module.
  void train(bool on = true) override;
  /// The options the encoder was built with.
  const TorchScriptEncoderOptions& options() const { return options_; }
  /// The scripted module (include <torch/script.h> to use it).
  torch::jit::Module& scripted();
  /// Writes the scripted module, with the current (e.g. fine-tuned) weights,
  /// to `path` with `torch.jit.save`'s format.
  void save_scripted(const std::string& path) const;

 private:
  struct State;
  TorchScriptEncoderOptions options_;
  std::unique_ptr<State> state_;
};

/// Module holder of `TorchScriptEncoderImpl`.
TORCH_MODULE(TorchScriptEncoder);

}  // namespace contaccum
