#include "test_util.h"

#include <contaccum/io/safetensors.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("contaccum-safetensors-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  // A file with `header` as its JSON header, `data` as its buffer and, when
  // given, a header length field that lies.
  std::string write_raw(const std::string& header, const std::string& data, int64_t length = -1) const {
    const auto path = file("raw.safetensors");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const uint64_t n = length < 0 ? header.size() : uint64_t(length);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
    return path;
  }

  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string read_bytes(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

std::map<std::string, torch::Tensor> every_dtype() {
  torch::manual_seed(7);
  std::map<std::string, torch::Tensor> t;
  t["f64"] = torch::randn({3, 4}, torch::kDouble);
  t["f32"] = torch::randn({2, 3, 2});
  t["f16"] = torch::randn({5}).to(torch::kHalf);
  t["bf16"] = torch::randn({2, 2}).to(torch::kBFloat16);
  t["i64"] = torch::randint(-(int64_t(1) << 40), int64_t(1) << 40, {4}, torch::kLong);
  t["i32"] = torch::randint(-100000, 100000, {2, 3}, torch::kInt);
  t["i16"] = torch::randint(-30000, 30000, {3}, torch::kShort);
  t["i8"] = torch::randint(-128, 128, {6}, torch::kChar);
  t["u8"] = torch::randint(0, 256, {2, 4}, torch::kByte);
  t["bool"] = torch::rand({7}).gt(0.5);
  t["scalar"] = torch::tensor(3.5);
  t["empty"] = torch::zeros({0, 3});
  t["transposed"] = torch::arange(12, torch::kFloat).view({3, 4}).t();  // not contiguous
  return t;
}

TEST_F(Safetensors, RoundTripsEveryDtypeAndTheMetadata) {
  const auto tensors = every_dtype();
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "héllo \"quoted\""}};
  const auto path = file("model.safetensors");
  save_safetensors(path, tensors, metadata);
  const auto back = read_safetensors(path);
  EXPECT_EQ(back.metadata, metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& kv : tensors) {
    ASSERT_TRUE(back.tensors.count(kv.first)) << kv.first;
    const auto& got = back.tensors.at(kv.first);
    EXPECT_EQ(got.scalar_type(), kv.second.scalar_type()) << kv.first;
    EXPECT_EQ(got.sizes(), kv.second.sizes()) << kv.first;
    EXPECT_TRUE(got.is_contiguous()) << kv.first;
    EXPECT_TRUE(torch::equal(got, kv.second)) << kv.first;
  }
  EXPECT_EQ(load_safetensors(path).size(), tensors.size());
  EXPECT_EQ(load_safetensors_metadata(path), metadata);

  // Layout as the reference writer: header padded with spaces to a multiple of
  // 8, __metadata__ first, then the tensors in name order, offsets ascending.
  const auto bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  const auto text = bytes.substr(8, n);
  EXPECT_LT(text.size() - (text.find_last_not_of(' ') + 1), 8u);  // only padding after the JSON
  const auto header = nlohmann::ordered_json::parse(text);
  std::vector<std::string> keys;
  uint64_t previous_end = 0;
  for (const auto& item : header.items()) {
    keys.push_back(item.key());
    if (item.key() == "__metadata__") continue;
    EXPECT_EQ(item.value()["data_offsets"][0].get<uint64_t>(), previous_end) << item.key();
    previous_end = item.value()["data_offsets"][1].get<uint64_t>();
  }
  EXPECT_EQ(bytes.size(), 8 + n + previous_end);
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys.front(), "__metadata__");
  EXPECT_TRUE(std::is_sorted(keys.begin() + 1, keys.end()));
}

TEST_F(Safetensors, NoMetadataAndNoTensorsAreFine) {
  const auto path = file("empty.safetensors");
  save_safetensors(path, {});
  EXPECT_TRUE(read_safetensors(path).tensors.empty());
  EXPECT_TRUE(read_safetensors(path).metadata.empty());
  EXPECT_EQ(read_bytes(path).size(), 16u);  // "{}" padded to 8
  EXPECT_EQ(read_bytes(path).find("__metadata__"), std::string::npos);
}

TEST_F(Safetensors, SaveLeavesNoTemporaryFileAndReplacesAtomically) {
  const auto path = file("model.safetensors");
  save_safetensors(path, {{"a", torch::ones({2})}});
  save_safetensors(path, {{"b", torch::zeros({3})}});
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
  const auto back = load_safetensors(path);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(back.count("b"));

  // A failed save keeps the old file and removes its temporary file.
  EXPECT_THAT(
      [&] {
        save_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("tensor 'c' has dtype ComplexFloat")));
  EXPECT_THAT(
      [&] {
        save_safetensors(path, {{"__metadata__", torch::ones({2})}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("'__metadata__' is reserved")));
  EXPECT_THAT(
      [&] {
        save_safetensors(path, {{"u", torch::Tensor()}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("tensor 'u' is undefined")));
  EXPECT_THAT(
      [&] {
        save_safetensors(path, {{"bad\xff", torch::ones({2})}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("must be valid UTF-8")));
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(load_safetensors(path).count("b"));

  const auto missing_dir = file("no/such/dir/model.safetensors");
  EXPECT_THAT(
      [&] {
        save_safetensors(missing_dir, {{"a", torch::ones({2})}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("cannot create temporary file")));
}

TEST_F(Safetensors, SaveDoesNotChangeItsInputs) {
  auto t = torch::arange(6, torch::kFloat).view({2, 3}).t().set_requires_grad(true);
  const auto path = file("grad.safetensors");
  save_safetensors(path, {{"t", t}});
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_TRUE(t.requires_grad());
  EXPECT_TRUE(torch::equal(load_safetensors(path).at("t"), t.detach()));
}

TEST_F(Safetensors, ReadsAFileWrittenByPython) {
  if (std::system(CONTACCUM_TEST_PYTHON " -c 'import struct, json' 2>/dev/null") != 0) {
    GTEST_FAIL() << CONTACCUM_TEST_PYTHON << " cannot run";
  }
  // Built by hand from the format description: tensors out of name order,
  // json.dumps' spaced separators, metadata last, no padding.
  const auto path = file("python.safetensors");
  const std::string script = R"PY(
import json, struct, sys
def bf16(x):
    return struct.pack('<H', struct.unpack('<I', struct.pack('<f', x))[0] >> 16)
parts = [
    ('weight', 'F32', [2, 2], struct.pack('<4f', 1.5, -2.0, 0.25, 8.0)),
    ('ids', 'I64', [3], struct.pack('<3q', -5, 0, 1 << 40)),
    ('half', 'F16', [2], struct.pack('<2e', 0.5, -3.0)),
    ('brain', 'BF16', [3], bf16(1.0) + bf16(-0.5) + bf16(256.0)),
    ('flags', 'BOOL', [2, 1], bytes([1, 0])),
    ('small', 'I8', [2], struct.pack('<2b', -7, 100)),
    ('bytes', 'U8', [1], bytes([200])),
    ('short', 'I16', [1], struct.pack('<h', -1234)),
    ('int', 'I32', [1], struct.pack('<i', 123456)),
    ('double', 'F64', [], struct.pack('<d', 3.141592653589793)),
]
header, data = {}, b''
for name, dtype, shape, raw in parts:
    header[name] = {'data_offsets': [len(data), len(data) + len(raw)], 'shape': shape, 'dtype': dtype}
    data += raw
header['__metadata__'] = {'format': 'pt', 'source': 'python'}
text = json.dumps(header).encode()
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + data)
)PY";
  const auto script_path = file("write.py");
  std::ofstream(script_path) << script;
  const std::string command = std::string(CONTACCUM_TEST_PYTHON) + " " + script_path + " " + path;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  const auto got = read_safetensors(path);
  EXPECT_EQ(got.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"source", "python"}}));
  ASSERT_EQ(got.tensors.size(), 10u);
  const auto& t = got.tensors;
  EXPECT_TRUE(torch::equal(t.at("weight"), torch::tensor({{1.5f, -2.0f}, {0.25f, 8.0f}})));
  EXPECT_TRUE(torch::equal(t.at("ids"), torch::tensor({int64_t(-5), int64_t(0), int64_t(1) << 40})));
  EXPECT_TRUE(torch::equal(t.at("half"), torch::tensor({0.5f, -3.0f}).to(torch::kHalf)));
  EXPECT_TRUE(torch::equal(t.at("brain"), torch::tensor({1.0f, -0.5f, 256.0f}).to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(t.at("flags"), torch::tensor({{true}, {false}})));
  EXPECT_TRUE(torch::equal(t.at("small"), torch::tensor({-7, 100}, torch::kChar)));
  EXPECT_TRUE(torch::equal(t.at("bytes"), torch::tensor({200}, torch::kByte)));
  EXPECT_TRUE(torch::equal(t.at("short"), torch::tensor({-1234}, torch::kShort)));
  EXPECT_TRUE(torch::equal(t.at("int"), torch::tensor({123456}, torch::kInt)));
  EXPECT_EQ(t.at("double").dim(), 0);
  EXPECT_EQ(t.at("double").item<double>(), 3.141592653589793);
}

TEST_F(Safetensors, PythonReadsOurFile) {
  const auto path = file("ours.safetensors");
  save_safetensors(path,
                   {{"b", torch::tensor({{1.0f, -2.5f}, {3.0f, 4.0f}})},
                    {"a", torch::tensor({int64_t(9), int64_t(-1)})},
                    {"c", torch::tensor({0.5, 1.0}).to(torch::kHalf)}},
                   {{"format", "pt"}});
  // An independent reader: struct + json, checks the padding too.
  const std::string script = R"PY(
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
assert n % 8 == 0, n
header = json.loads(raw[8:8 + n])
assert header.pop('__metadata__') == {'format': 'pt'}
data = raw[8 + n:]
fmt = {'F32': 'f', 'I64': 'q', 'F16': 'e'}
out = {}
for name, info in header.items():
    b, e = info['data_offsets']
    size = struct.calcsize(fmt[info['dtype']])
    out[name] = [info['dtype'], info['shape'], list(struct.unpack('<%d%s' % ((e - b) // size, fmt[info['dtype']]), data[b:e]))]
json.dump(out, open(sys.argv[2], 'w'))
)PY";
  const auto script_path = file("read.py");
  std::ofstream(script_path) << script;
  const auto result_path = file("read.json");
  const std::string command = std::string(CONTACCUM_TEST_PYTHON) + " " + script_path + " " + path + " " + result_path;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  json result;
  std::ifstream(result_path) >> result;
  EXPECT_EQ(result["b"], json::parse(R"(["F32", [2, 2], [1.0, -2.5, 3.0, 4.0]])"));
  EXPECT_EQ(result["a"], json::parse(R"(["I64", [2], [9, -1]])"));
  EXPECT_EQ(result["c"], json::parse(R"(["F16", [2], [0.5, 1.0]])"));
}

// A valid one-tensor header around `entry` (the value of tensor "x").
std::string one(const std::string& entry) { return R"({"x": )" + entry + "}"; }
const std::string f32x2 = R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
const std::string eight_bytes(8, '\0');

TEST_F(Safetensors, ValidHandWrittenFileLoads) {
  const auto path = write_raw(one(f32x2) + "   ", eight_bytes);
  EXPECT_TRUE(torch::equal(load_safetensors(path).at("x"), torch::zeros({2})));
}

class SafetensorsMalformed : public Safetensors {
 public:
  void expect_error(const std::string& path, const std::string& message) {
    EXPECT_THAT([&] { load_safetensors(path); },
                ThrowsMessage<c10::Error>(::testing::AllOf(HasSubstr(message), HasSubstr(path))));
  }
};

TEST_F(SafetensorsMalformed, EachProblemGetsItsOwnError) {
  auto raw = [&](const std::string& header, const std::string& data, int64_t length = -1) {
    return write_raw(header, data, length);
  };
  expect_error(file("missing.safetensors"), "cannot open");
  {
    const auto path = file("short.safetensors");
    std::ofstream(path, std::ios::binary) << "abc";
    expect_error(path, "is truncated: 3 bytes");
  }
  expect_error(raw(one(f32x2), eight_bytes, 1000), "header length 1000 runs past the end of the file");
  expect_error(raw(one(f32x2), eight_bytes, int64_t(1) << 40), "exceeds the limit");
  expect_error(raw(R"({"x": {"dtype": "F32",)", ""), "header is not valid JSON");
  expect_error(raw("", ""), "header is not valid JSON");
  expect_error(raw("[1, 2]", ""), "header must be a JSON object");
  expect_error(raw(R"({"x": 3})", ""), "tensor 'x' must be a JSON object");
  expect_error(raw(one(R"({"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]})"), "ab"),
               "tensor 'x' has unknown dtype \"F8_E4M3\"");
  expect_error(raw(one(R"({"dtype": 5, "shape": [2], "data_offsets": [0, 8]})"), eight_bytes),
               "\"dtype\" must be a string");
  expect_error(raw(one(R"({"shape": [2], "data_offsets": [0, 8]})"), eight_bytes), "has no \"dtype\" field");
  expect_error(raw(one(R"({"dtype": "F32", "data_offsets": [0, 8]})"), eight_bytes), "has no \"shape\" field");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [2]})"), eight_bytes), "has no \"data_offsets\" field");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})"), eight_bytes),
               "\"shape\" must be an array of non-negative integers");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]})"), eight_bytes),
               "\"shape\" must be an array of non-negative integers");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [0]})"), eight_bytes),
               "\"data_offsets\" must be [begin, end]");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]})"), eight_bytes),
               "end before they begin");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})"), eight_bytes),
               "span 8 bytes but shape [3] of F32 needs 12");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]})"), eight_bytes),
               "is too large");
  expect_error(raw(one(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})"), eight_bytes),
               "out of range of the 8-byte data buffer");
  expect_error(raw(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                   std::string(12, '\0')),
               "tensor 'y' (data_offsets [4, 12]) overlaps tensor 'x'");
  expect_error(raw(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", eight_bytes),
               "gap in the data buffer: bytes [0, 4)");
  expect_error(raw(one(f32x2), std::string(12, '\0')), "data buffer is 12 bytes but the tensors cover only 8");
  expect_error(raw(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                   eight_bytes),
               "header names 'x' more than once");
  expect_error(raw(R"({"__metadata__": {"a": 1}})", ""), "__metadata__ value of 'a' must be a string");
  expect_error(raw(R"({"__metadata__": [1]})", ""), "__metadata__ must be an object of strings");
  expect_error(raw(one(R"({"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]})"), std::string("\x01\x02", 2)),
               "BOOL tensor 'x' holds a byte other than 0 or 1");
  // The metadata reader validates the header too.
  const auto bad = raw(one(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})"), eight_bytes);
  EXPECT_THAT([&] { load_safetensors_metadata(bad); }, ThrowsMessage<c10::Error>(HasSubstr("needs 12")));
}

}  // namespace
}  // namespace contaccum
