#include "test_util.h"

#include <contaccum/encoders/transformer.h>
#include <contaccum/io/safetensors.h>
#include <contaccum/testing.h>

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

TransformerEncoderOptions small_options() {
  return TransformerEncoderOptions(100)
      .hidden_size(32)
      .num_hidden_layers(2)
      .num_attention_heads(4)
      .intermediate_size(64)
      .max_position_embeddings(40)
      .type_vocab_size(2);
}

// Larger than Hugging Face's initialisation, so that every part of the
// network visibly shapes the output.
void randomize(TransformerEncoderImpl& encoder) {
  torch::NoGradGuard no_grad;
  for (auto& kv : encoder.named_parameters()) {
    const bool norm = kv.key().find("LayerNorm") != std::string::npos;
    if (norm && kv.key().find("weight") != std::string::npos) {
      kv.value().copy_(1.0 + 0.1 * torch::randn_like(kv.value()));
    } else {
      kv.value().copy_((norm ? 0.1 : 0.2) * torch::randn_like(kv.value()));
    }
  }
}

// Rows of different lengths (one full, one of a single token), [CLS]-like
// first id, two segments within the real tokens.
EncoderInput sample_input(int64_t batch, int64_t seq, int64_t vocab = 100, bool with_types = true) {
  EncoderInput in;
  auto lengths = torch::randint(1, seq + 1, {batch, 1}, torch::kLong);
  lengths[0][0] = seq;
  if (batch > 1) lengths[1][0] = 1;
  const auto positions = torch::arange(seq).unsqueeze(0);
  in.attention_mask = positions.lt(lengths).to(torch::kLong);
  in.input_ids = torch::randint(1, vocab, {batch, seq}, torch::kLong) * in.attention_mask;
  in.input_ids.select(1, 0).fill_(1);
  if (with_types) in.extras["token_type_ids"] = (positions.mul(2).ge(lengths) * in.attention_mask).to(torch::kLong);
  return in;
}

json write_raw(const fs::path& dir, const std::string& name, const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kLong);
  std::ofstream out(dir / (name + ".bin"), std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  return json{{"file", name + ".bin"}, {"dtype", "int64"}, {"shape", c.sizes().vec()}};
}

torch::Tensor read_float32(const fs::path& dir, const json& entry) {
  std::ifstream in(dir / entry["file"].get<std::string>(), std::ios::binary);
  auto t = torch::empty(entry["shape"].get<std::vector<int64_t>>(), torch::kFloat);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  EXPECT_TRUE(in) << entry.dump();
  return t;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

class TransformerEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("contaccum-transformer-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(TransformerEncoderTest, MatchesThePythonReference) {
  torch::manual_seed(11);
  TransformerEncoder encoder(small_options());
  randomize(*encoder);
  encoder->eval();
  encoder->save_hf_pretrained(file("model"));
  const auto input = sample_input(5, 17);
  json inputs{{"input_ids", write_raw(dir_, "input_ids", input.input_ids)},
              {"attention_mask", write_raw(dir_, "attention_mask", input.attention_mask)},
              {"token_type_ids", write_raw(dir_, "token_type_ids", input.extras.at("token_type_ids"))}};
  std::ofstream(dir_ / "inputs.json") << inputs.dump();

  const std::string command =
      std::string(CONTACCUM_TEST_PYTHON) + " " + CONTACCUM_TEST_DIR + "/python/bert_reference.py " + dir_.string();
  // One interpreter start only: importing torch takes seconds.
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << " failed; it needs torch and numpy in " << CONTACCUM_TEST_PYTHON
      << " (Debian's python3-torch: run scripts/install-deps.sh)";
  json result;
  std::ifstream(dir_ / "result.json") >> result;
  const auto want_cls = read_float32(dir_, result["cls"]);
  const auto want_mean = read_float32(dir_, result["mean"]);

  torch::NoGradGuard no_grad;
  const auto cls = encoder->forward(input);
  ASSERT_EQ(cls.sizes(), want_cls.sizes());
  EXPECT_LE(max_diff(cls, want_cls), 1e-5);
  EXPECT_GT(want_cls.abs().max().item<double>(), 0.1);  // not a trivially small output

  auto mean_encoder = load_hf_pretrained(file("model"), TransformerPooling::Mean);
  mean_encoder->eval();
  const auto mean = mean_encoder->forward(input);
  ASSERT_EQ(mean.sizes(), want_mean.sizes());
  EXPECT_LE(max_diff(mean, want_mean), 1e-5);
}

TEST_F(TransformerEncoderTest, SaveLoadRoundTripIsExact) {
  torch::manual_seed(12);
  TransformerEncoder original(small_options().pooling(TransformerPooling::Mean));
  randomize(*original);
  original->eval();
  const auto input = sample_input(4, 9);
  const auto want = original->forward(input);

  original->save_hf_weights(file("weights.safetensors"));
  EXPECT_EQ(load_safetensors_metadata(file("weights.safetensors")).at("format"), "pt");
  TransformerEncoder copy(small_options().pooling(TransformerPooling::Mean));
  copy->eval();
  EXPECT_FALSE(torch::equal(copy->forward(input), want));
  copy->load_hf_weights(file("weights.safetensors"));
  EXPECT_TRUE(torch::equal(copy->forward(input), want));

  original->save_hf_pretrained(file("pretrained"));
  EXPECT_TRUE(fs::exists(dir_ / "pretrained" / "config.json"));
  auto loaded = load_hf_pretrained(file("pretrained"));
  EXPECT_EQ(loaded->options().pooling(), TransformerPooling::Mean);  // read back from contaccum_pooling
  loaded->eval();
  EXPECT_TRUE(torch::equal(loaded->forward(input), want));

  json config;
  std::ifstream(dir_ / "pretrained" / "config.json") >> config;
  EXPECT_EQ(config["model_type"], "bert");
  EXPECT_EQ(config["architectures"], json::array({"BertModel"}));
  EXPECT_EQ(config["hidden_size"], 32);
  EXPECT_EQ(config["torch_dtype"], "float32");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_ / "pretrained")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "model.safetensors"}));  // no temporary files

  // Every tensor under its Hugging Face name, nothing else.
  const auto tensors = load_safetensors(file("weights.safetensors"));
  EXPECT_EQ(tensors.size(), 5u + 2 * 16u);
  for (const char* name :
       {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
        "encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.key.bias",
        "encoder.layer.1.attention.self.value.weight", "encoder.layer.1.attention.output.dense.weight",
        "encoder.layer.1.attention.output.LayerNorm.bias", "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.1.output.dense.bias", "encoder.layer.1.output.LayerNorm.weight"}) {
    EXPECT_TRUE(tensors.count(name)) << name;
  }
  EXPECT_EQ(tensors.at("encoder.layer.0.intermediate.dense.weight").sizes(), (std::vector<int64_t>{64, 32}));
}

TEST_F(TransformerEncoderTest, LoadsPrefixedCheckpointsWithOldNamesAndHeads) {
  torch::manual_seed(13);
  TransformerEncoder original(small_options());
  randomize(*original);
  original->eval();
  const auto input = sample_input(3, 8);
  const auto want = original->forward(input);

  // As a BertForPreTraining checkpoint converted from TensorFlow: bert.
  // prefix, gamma/beta, another dtype (converted on load), pooler and heads.
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& kv : original->named_parameters()) {
    auto name = "bert." + kv.key();
    const auto pos = name.find("LayerNorm.");
    if (pos != std::string::npos)
      name = name.substr(0, pos) + (kv.key().back() == 't' ? "LayerNorm.gamma" : "LayerNorm.beta");
    tensors[name] = kv.value().detach().to(torch::kDouble);
  }
  tensors["bert.embeddings.position_ids"] = torch::arange(40).unsqueeze(0);
  tensors["bert.pooler.dense.weight"] = torch::randn({32, 32});
  tensors["bert.pooler.dense.bias"] = torch::randn({32});
  tensors["cls.predictions.bias"] = torch::randn({100});
  tensors["cls.seq_relationship.weight"] = torch::randn({2, 32});
  save_safetensors(file("pretraining.safetensors"), tensors);

  TransformerEncoder copy(small_options());
  copy->load_hf_weights(file("pretraining.safetensors"));
  copy->eval();
  EXPECT_TRUE(torch::equal(copy->forward(input), want));
}

TEST_F(TransformerEncoderTest, LoadErrorsNameTheTensorTheShapesAndTheFile) {
  torch::manual_seed(14);
  TransformerEncoder encoder(small_options());
  std::map<std::string, torch::Tensor> good;
  for (const auto& kv : encoder->named_parameters()) good[kv.key()] = kv.value().detach();
  const auto before = encoder->named_parameters()["embeddings.word_embeddings.weight"].clone();

  auto expect_error = [&](std::map<std::string, torch::Tensor> tensors, const std::string& message) {
    const auto path = file("bad.safetensors");
    save_safetensors(path, tensors);
    EXPECT_THAT([&] { encoder->load_hf_weights(path); },
                ThrowsMessage<c10::Error>(AllOf(HasSubstr(message), HasSubstr(path))));
    // Nothing copied before the error.
    EXPECT_TRUE(torch::equal(encoder->named_parameters()["embeddings.word_embeddings.weight"], before));
  };
  auto missing = good;
  missing.erase("encoder.layer.1.output.dense.weight");
  missing["embeddings.word_embeddings.weight"] = torch::zeros({100, 32});
  expect_error(missing, "has no tensor 'encoder.layer.1.output.dense.weight'");
  auto wrong = good;
  wrong["encoder.layer.0.attention.self.key.weight"] = torch::zeros({32, 16});
  expect_error(wrong, "tensor 'encoder.layer.0.attention.self.key.weight' in '" + file("bad.safetensors") +
                          "' has shape [32, 16], expected [32, 32]");
  auto extra_layer = good;
  extra_layer["encoder.layer.2.output.dense.bias"] = torch::zeros({32});
  expect_error(extra_layer, "unexpected tensor 'encoder.layer.2.output.dense.bias'");
  auto twice = good;
  twice["bert.embeddings.LayerNorm.weight"] = torch::ones({32});
  expect_error(twice, "under several names");
  auto integer = good;
  integer["embeddings.LayerNorm.bias"] = torch::zeros({32}, torch::kLong);
  expect_error(integer, "must be floating point");
  EXPECT_THAT([&] { encoder->load_hf_weights(file("nope.safetensors")); },
              ThrowsMessage<c10::Error>(HasSubstr("cannot open")));
}

TEST_F(TransformerEncoderTest, PassesTheEncoderCheckWithDropoutInBothDtypes) {
  torch::manual_seed(15);
  TransformerEncoder encoder(small_options().hidden_dropout_prob(0.2).attention_probs_dropout_prob(0.2));
  const auto sample = test::random_batch(6, 0, 100).queries;
  auto report = testing::check_encoder(*encoder, sample);
  EXPECT_TRUE(report.ok()) << report.message();

  // Dropout is really active in training mode.
  encoder->train();
  EXPECT_FALSE(torch::equal(encoder->forward(sample), encoder->forward(sample)));

  auto with_types = sample_input(4, 10);
  report = testing::check_encoder(*encoder, with_types);
  EXPECT_TRUE(report.ok()) << report.message();

  encoder->to(torch::kDouble);
  report = testing::check_encoder(*encoder, sample);
  EXPECT_TRUE(report.ok()) << report.message();
  EXPECT_EQ(encoder->forward(sample).scalar_type(), torch::kDouble);
}

TEST_F(TransformerEncoderTest, GradCacheEqualsChunkedFullBatchWithDropout) {
  torch::manual_seed(18);
  const auto batch = test::random_batch(8, 1);
  auto run = [&](const StrategyOptions& options) {
    torch::manual_seed(19);
    auto tower = [] {
      return TransformerEncoder(small_options().hidden_dropout_prob(0.2).attention_probs_dropout_prob(0.2)).ptr();
    };
    DualEncoder model(tower(), tower());
    model->to(torch::kDouble);
    Strategy strategy(model, options);
    torch::manual_seed(20);
    test::step(strategy, batch);
    return test::grads_of(model);
  };
  // Full batch with encoder passes cut like GradCache's, so dropout draws
  // the same masks in the same order.
  const auto want = run(StrategyOptions(8, 4).negatives(NegativeScope::TotalBatch));
  const auto got = run(StrategyOptions::grad_cache(8, 4));
  test::expect_same_grads(got, want, 1e-10);
}

TEST_F(TransformerEncoderTest, Float64AgreesWithFloat32) {
  torch::manual_seed(16);
  TransformerEncoder encoder(small_options().pooling(TransformerPooling::Mean));
  randomize(*encoder);
  encoder->eval();
  const auto input = sample_input(4, 12);
  const auto single = encoder->forward(input);
  encoder->to(torch::kDouble);
  const auto twice = encoder->forward(input);
  EXPECT_EQ(twice.scalar_type(), torch::kDouble);
  EXPECT_LE(max_diff(single, twice), 1e-5);
}

TEST_F(TransformerEncoderTest, MasksPaddingAndDefaultsTokenTypesToZero) {
  torch::manual_seed(17);
  TransformerEncoder encoder(small_options().pooling(TransformerPooling::Mean));
  randomize(*encoder);
  encoder->eval();
  torch::NoGradGuard no_grad;
  auto input = sample_input(4, 10);
  const auto want = encoder->forward(input);

  // Ids and token types at padded positions do not matter.
  auto changed = input;
  changed.input_ids = input.input_ids + (1 - input.attention_mask) * 7;
  changed.extras["token_type_ids"] = input.extras.at("token_type_ids") + (1 - input.attention_mask);
  EXPECT_LE(max_diff(encoder->forward(changed), want), 1e-6);

  // Mean pooling is the masked mean of the token states.
  const auto states = encoder->encode_tokens(input);
  const auto m = input.attention_mask.to(torch::kFloat).unsqueeze(-1);
  EXPECT_TRUE(torch::allclose(want, (states * m).sum(1) / m.sum(1), 1e-6, 1e-6));

  // Absent token types are zeros; absent mask attends to everything.
  auto zeros = input;
  zeros.extras["token_type_ids"] = torch::zeros_like(input.input_ids);
  auto absent = input;
  absent.extras.clear();
  EXPECT_TRUE(torch::equal(encoder->forward(absent), encoder->forward(zeros)));
  auto no_mask = absent;
  no_mask.attention_mask = torch::Tensor();
  auto full_mask = absent;
  full_mask.attention_mask = torch::ones_like(input.input_ids);
  EXPECT_LE(max_diff(encoder->forward(no_mask), encoder->forward(full_mask)), 1e-6);
}

TEST_F(TransformerEncoderTest, RejectsBadOptionsAndInputs) {
  auto rejects = [](TransformerEncoderOptions o, const std::string& message) {
    EXPECT_THAT([&] { TransformerEncoder{o}; }, ThrowsMessage<c10::Error>(HasSubstr(message))) << message;
  };
  rejects(TransformerEncoderOptions(0), "vocab_size must be > 0, got 0");
  rejects(small_options().hidden_size(30), "hidden_size must be a multiple of num_attention_heads = 4, got 30");
  rejects(small_options().num_hidden_layers(0), "num_hidden_layers must be > 0, got 0");
  rejects(small_options().intermediate_size(-1), "intermediate_size must be > 0, got -1");
  rejects(small_options().hidden_dropout_prob(1.0), "hidden_dropout_prob must be in [0, 1), got 1");
  rejects(small_options().attention_probs_dropout_prob(-0.1),
          "attention_probs_dropout_prob must be in [0, 1), got -0.1");
  rejects(small_options().hidden_act("tanh"), "hidden_act must be one of");
  rejects(small_options().pad_token_id(100), "pad_token_id must be -1 (none) or in [0, vocab_size = 100), got 100");

  TransformerEncoder encoder(small_options());
  auto input = sample_input(2, 41);
  EXPECT_THAT([&] { encoder->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("sequence length 41 exceeds max_position_embeddings = 40")));
  input = sample_input(2, 5);
  input.input_ids[0][1] = 100;
  EXPECT_THAT([&] { encoder->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("input_ids must be in [0, vocab_size = 100), got values in [")));
  input = sample_input(2, 5);
  input.extras["token_type_ids"] = torch::full({2, 5}, 2, torch::kLong);
  EXPECT_THAT([&] { encoder->forward(input); },
              ThrowsMessage<c10::Error>(HasSubstr("token_type_ids must be in [0, type_vocab_size = 2)")));
  input = sample_input(2, 5);
  input.attention_mask = torch::ones({2, 4}, torch::kLong);
  EXPECT_THAT([&] { encoder->forward(input); }, ThrowsMessage<c10::Error>(HasSubstr("attention_mask [2, 4]")));
}

TEST_F(TransformerEncoderTest, ReadsAHuggingFaceConfig) {
  // bert-base-uncased's config as published (with the old-style omission of
  // layer_norm_eps handled by the default).
  const auto path = file("config.json");
  std::ofstream(path) << R"({
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": false,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "max_position_embeddings": 512, "model_type": "bert",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522})";
  const auto o = TransformerEncoderOptions::from_hf_config(path);
  EXPECT_EQ(o.vocab_size(), 30522);
  EXPECT_EQ(o.hidden_size(), 768);
  EXPECT_EQ(o.num_hidden_layers(), 12);
  EXPECT_EQ(o.num_attention_heads(), 12);
  EXPECT_EQ(o.intermediate_size(), 3072);
  EXPECT_EQ(o.max_position_embeddings(), 512);
  EXPECT_EQ(o.type_vocab_size(), 2);
  EXPECT_EQ(o.hidden_dropout_prob(), 0.1);
  EXPECT_EQ(o.attention_probs_dropout_prob(), 0.1);
  EXPECT_EQ(o.layer_norm_eps(), 1e-12);
  EXPECT_EQ(o.hidden_act(), "gelu");
  EXPECT_EQ(o.pad_token_id(), 0);
  EXPECT_EQ(o.pooling(), TransformerPooling::Cls);

  // to_hf_config -> from_hf_config keeps everything.
  const auto custom =
      small_options().hidden_act("relu").layer_norm_eps(1e-7).pad_token_id(-1).pooling(TransformerPooling::Mean);
  std::ofstream(file("custom.json")) << custom.to_hf_config();
  const auto back = TransformerEncoderOptions::from_hf_config(file("custom.json"));
  EXPECT_EQ(back.hidden_act(), "relu");
  EXPECT_EQ(back.layer_norm_eps(), 1e-7);
  EXPECT_EQ(back.pad_token_id(), -1);
  EXPECT_EQ(back.pooling(), TransformerPooling::Mean);
  EXPECT_EQ(back.intermediate_size(), 64);

  auto expect_error = [&](const std::string& text, const std::string& message) {
    const auto bad = file("bad.json");
    std::ofstream(bad) << text;
    EXPECT_THAT([&] { TransformerEncoderOptions::from_hf_config(bad); },
                ThrowsMessage<c10::Error>(AllOf(HasSubstr(message), HasSubstr(bad))))
        << message;
  };
  auto config = json::parse(custom.to_hf_config());
  auto without = config;
  without.erase("num_attention_heads");
  expect_error(without.dump(), "has no \"num_attention_heads\" key");
  auto wrong_type = config;
  wrong_type["hidden_size"] = "32";
  expect_error(wrong_type.dump(), "\"hidden_size\" must be an integer, got \"32\"");
  auto roberta = config;
  roberta["model_type"] = "roberta";
  expect_error(roberta.dump(), "model_type \"roberta\" is not supported");
  expect_error("{\"vocab_size\": ", "is not valid JSON");
  EXPECT_THAT([&] { TransformerEncoderOptions::from_hf_config(file("none.json")); },
              ThrowsMessage<c10::Error>(HasSubstr("cannot open BERT config")));
}

}  // namespace
}  // namespace contaccum
