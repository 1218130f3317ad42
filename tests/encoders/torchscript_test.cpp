#include "test_util.h"

#include <contaccum/encoders/torchscript.h>
#include <contaccum/testing.h>

#include <torch/script.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// Scripts three small models with Python's torch.jit.script, saves them and
// their eval-mode outputs on fixed inputs (raw little-endian + manifest).
const char* kScript = R"PY(
import json, os, sys
from typing import Dict, Tuple
import torch

out = sys.argv[1]
torch.manual_seed(0)


class Body(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.3)
        self.proj = torch.nn.Linear(12, dim)

    def forward(self, x):
        return self.proj(self.dropout(x))


class Pooled(torch.nn.Module):
    """Masked mean of embeddings, dropout, projection: returns [batch, 8]."""
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 12, padding_idx=0)
        self.body = Body(8)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, input_ids, attention_mask):
        h = self.embedding(input_ids)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.body((h * m).sum(1) / m.sum(1).clamp_min(1.0)) * self.scale


class Tokens(torch.nn.Module):
    """Per-token states [batch, seq, 8] with token types; returns a tuple."""
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(50, 12, padding_idx=0)
        self.types = torch.nn.Embedding(2, 12)
        self.body = Body(8)

    def forward(self, input_ids, attention_mask, token_type_ids) -> Tuple[torch.Tensor, torch.Tensor]:
        states = self.body(self.embedding(input_ids) + self.types(token_type_ids))
        return states.sum(1), states


class Named(Tokens):
    def forward(self, input_ids, attention_mask, token_type_ids) -> Dict[str, torch.Tensor]:
        states = self.body(self.embedding(input_ids) + self.types(token_type_ids))
        return {"tokens": states, "sum": states.sum(1)}


ids = torch.tensor([[3, 7, 9, 0, 0], [4, 4, 0, 0, 0], [1, 2, 3, 4, 5], [8, 0, 0, 0, 0]])
mask = (ids != 0).long()
types = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
manifest = {}


def save(name, tensor):
    tensor = tensor.detach().contiguous()
    tensor.numpy().tofile(os.path.join(out, name + ".bin"))
    manifest[name] = {"file": name + ".bin", "dtype": str(tensor.dtype), "shape": list(tensor.shape)}


save("ids", ids)
save("mask", mask)
save("types", types)
for name, model in (("pooled", Pooled()), ("tokens", Tokens()), ("named", Named())):
    scripted = torch.jit.script(model)  # saved in training mode, as a user would
    scripted.save(os.path.join(out, name + ".pt"))
    model.eval()
    with torch.no_grad():
        result = model(ids, mask) if name == "pooled" else model(ids, mask, types)
    save(name, result if name == "pooled" else (result[1] if name == "tokens" else result["tokens"]))
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"))
)PY";

class TorchScriptEncoderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("contaccum-torchscript-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "make.py") << kScript;
    const std::string command =
        std::string(CONTACCUM_TEST_PYTHON) + " " + (dir_ / "make.py").string() + " " + dir_.string();
    scripted_ = std::system(command.c_str()) == 0;
    if (scripted_) std::ifstream(dir_ / "manifest.json") >> manifest_;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    ASSERT_TRUE(scripted_) << CONTACCUM_TEST_PYTHON
                           << " could not script the test modules (needs Debian's python3-torch: "
                              "run scripts/install-deps.sh)";
  }

  static std::string path(const std::string& name) { return (dir_ / name).string(); }

  static torch::Tensor load(const std::string& name) {
    const auto& entry = manifest_.at(name);
    const auto dtype = entry["dtype"] == "torch.int64" ? torch::kLong : torch::kFloat;
    auto t = torch::empty(entry["shape"].get<std::vector<int64_t>>(), dtype);
    std::ifstream in(dir_ / entry["file"].get<std::string>(), std::ios::binary);
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    return t;
  }

  static EncoderInput inputs(bool with_types = false) {
    EncoderInput in{load("ids"), load("mask"), {}};
    if (with_types) in.extras["token_type_ids"] = load("types");
    return in;
  }

  static fs::path dir_;
  static bool scripted_;
  static json manifest_;
};

fs::path TorchScriptEncoderTest::dir_;
bool TorchScriptEncoderTest::scripted_ = false;
json TorchScriptEncoderTest::manifest_;

TEST_F(TorchScriptEncoderTest, MatchesPythonInEvalMode) {
  TorchScriptEncoder encoder(TorchScriptEncoderOptions(path("pooled.pt"), 8));
  EXPECT_TRUE(encoder->scripted().is_training());
  encoder->eval();
  EXPECT_FALSE(encoder->scripted().is_training());  // else dropout would spoil the comparison below
  torch::NoGradGuard no_grad;
  const auto out = encoder->forward(inputs());
  EXPECT_TRUE(torch::allclose(out, load("pooled"), 1e-6, 1e-6)) << out << load("pooled");
}

TEST_F(TorchScriptEncoderTest, RegistersTheScriptedParametersUnderTheirNames) {
  TorchScriptEncoder encoder(TorchScriptEncoderOptions(path("pooled.pt"), 8));
  const auto params = encoder->named_parameters();
  std::vector<std::string> names;
  for (const auto& kv : params) names.push_back(kv.key());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"body.proj.bias", "body.proj.weight", "embedding.weight"}));
  const auto buffers = encoder->named_buffers();
  ASSERT_TRUE(buffers.contains("scale"));
  EXPECT_EQ(buffers["scale"].item<float>(), 2.0f);
  // The very same tensors as the scripted module's.
  for (const auto& p : encoder->scripted().named_parameters()) {
    EXPECT_TRUE(params[p.name].is_same(p.value)) << p.name;
    EXPECT_TRUE(params[p.name].requires_grad()) << p.name;
  }

  // Gradients flow into them and an optimiser step changes the scripted model.
  auto before = encoder->forward(inputs()).detach();
  encoder->forward(inputs()).pow(2).sum().backward();
  for (const auto& kv : params) {
    ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
    EXPECT_GT(kv.value().grad().abs().sum().item<double>(), 0.0) << kv.key();
  }
  torch::optim::SGD(encoder->parameters(), 0.5).step();
  encoder->eval();
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(torch::allclose(encoder->forward(inputs()), load("pooled"), 1e-3, 1e-3));

  // Saved with the new weights.
  encoder->save_scripted(path("tuned.pt"));
  TorchScriptEncoder reloaded(TorchScriptEncoderOptions(path("tuned.pt"), 8));
  reloaded->eval();
  EXPECT_TRUE(torch::equal(reloaded->forward(inputs()), encoder->forward(inputs())));
}

TEST_F(TorchScriptEncoderTest, PassesTheEncoderCheckWithDropout) {
  TorchScriptEncoder encoder(TorchScriptEncoderOptions(path("pooled.pt"), 8));
  auto report = testing::check_encoder(*encoder, inputs());
  EXPECT_TRUE(report.ok()) << report.message();
  EXPECT_TRUE(encoder->is_training());
  // Dropout is really active in training mode.
  EXPECT_FALSE(torch::equal(encoder->forward(inputs()), encoder->forward(inputs())));

  // to() reaches the scripted module through the shared tensors.
  encoder->eval();
  const auto single = encoder->forward(inputs()).detach();
  encoder->to(torch::kDouble);
  EXPECT_EQ(encoder->scripted().attr("scale").toTensor().scalar_type(), torch::kDouble);
  const auto twice = encoder->forward(inputs());
  EXPECT_EQ(twice.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(twice.to(torch::kFloat), single, 1e-5, 1e-5));
  report = testing::check_encoder(*encoder, inputs());
  EXPECT_TRUE(report.ok()) << report.message();
}

TEST_F(TorchScriptEncoderTest, SelectsTupleAndDictOutputsAndPoolsTokenStates) {
  const auto tokens = load("tokens");  // [4, 5, 8], eval mode
  const auto input = inputs(/*with_types=*/true);
  const auto mask = input.attention_mask.to(torch::kFloat).unsqueeze(-1);
  const auto named_tokens = load("named");  // another model: its own weights
  const auto mean = (named_tokens * mask).sum(1) / mask.sum(1);
  const std::vector<std::string> three{"input_ids", "attention_mask", "token_type_ids"};

  TorchScriptEncoder cls(TorchScriptEncoderOptions(path("tokens.pt"), 8).inputs(three).output_index(1));
  cls->eval();
  EXPECT_TRUE(torch::allclose(cls->forward(input), tokens.select(1, 0), 1e-6, 1e-6));
  TorchScriptEncoder summed(TorchScriptEncoderOptions(path("tokens.pt"), 8).inputs(three));
  summed->eval();
  EXPECT_TRUE(torch::allclose(summed->forward(input), tokens.sum(1), 1e-5, 1e-5));
  TorchScriptEncoder named(TorchScriptEncoderOptions(path("named.pt"), 8)
                               .inputs(three)
                               .output_key("tokens")
                               .pooling(TorchScriptPooling::Mean));
  named->eval();
  EXPECT_TRUE(torch::allclose(named->forward(input), mean, 1e-6, 1e-6));

  // Absent token types are zeros.
  auto no_types = input;
  no_types.extras.clear();
  auto zero_types = input;
  zero_types.extras["token_type_ids"] = torch::zeros_like(input.input_ids);
  EXPECT_TRUE(torch::equal(cls->forward(no_types), cls->forward(zero_types)));

  cls->train();
  auto report = testing::check_encoder(*cls, input);
  EXPECT_TRUE(report.ok()) << report.message();
  report = testing::check_encoder(*named, input);
  EXPECT_TRUE(report.ok()) << report.message();
}

TEST_F(TorchScriptEncoderTest, ErrorsAreClear) {
  EXPECT_THAT([] { TorchScriptEncoder(TorchScriptEncoderOptions(path("missing.pt"), 8)); },
              ThrowsMessage<c10::Error>(HasSubstr("no such file '" + path("missing.pt") + "'")));
  std::ofstream(path("garbage.pt")) << "not a zip archive";
  EXPECT_THAT([] { TorchScriptEncoder(TorchScriptEncoderOptions(path("garbage.pt"), 8)); },
              ThrowsMessage<c10::Error>(HasSubstr("cannot load '" + path("garbage.pt") + "' as a TorchScript module")));
  EXPECT_THAT([] { TorchScriptEncoder(TorchScriptEncoderOptions(path("pooled.pt"), 8).method("encode")); },
              ThrowsMessage<c10::Error>(HasSubstr("has no method 'encode'")));
  EXPECT_THAT([] { TorchScriptEncoder(TorchScriptEncoderOptions(path("pooled.pt"), 0)); },
              ThrowsMessage<c10::Error>(HasSubstr("output_dim must be > 0, got 0")));

  const auto input = inputs(/*with_types=*/true);
  TorchScriptEncoder wrong_dim(TorchScriptEncoderOptions(path("pooled.pt"), 6));
  EXPECT_THAT([&] { wrong_dim->forward(input); },
              ThrowsMessage<c10::Error>(AllOf(HasSubstr(path("pooled.pt")),
                                              HasSubstr("output must be [batch = 4, output_dim = 6]"),
                                              HasSubstr("got [4, 8]"))));
  const std::vector<std::string> three{"input_ids", "attention_mask", "token_type_ids"};
  TorchScriptEncoder dict(TorchScriptEncoderOptions(path("named.pt"), 8).inputs(three));
  EXPECT_THAT([&] { dict->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("returns a dict; set output_key to one of its keys (")));
  TorchScriptEncoder bad_key(TorchScriptEncoderOptions(path("named.pt"), 8).inputs(three).output_key("pooled"));
  EXPECT_THAT([&] { bad_key->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("output_key 'pooled' is not among the keys")));
  TorchScriptEncoder bad_index(TorchScriptEncoderOptions(path("tokens.pt"), 8).inputs(three).output_index(2));
  EXPECT_THAT([&] { bad_index->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("output_index 2 is out of range: the module returns 2 values")));
  TorchScriptEncoder bad_input(TorchScriptEncoderOptions(path("tokens.pt"), 8).inputs({"input_ids", "segments"}));
  EXPECT_THAT([&] { bad_input->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("input 'segments' is neither input_ids, attention_mask nor a key")));
}

}  // namespace
}  // namespace contaccum
