#include "contaccum/io/safetensors.h"

#include "contaccum/io/atomic_file.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <vector>

namespace contaccum {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The reference implementation refuses larger headers; so do we, so that a
// corrupt length cannot make us allocate gigabytes before failing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  c10::ScalarType type;
};

constexpr std::array<DtypeInfo, 10> kDtypes{{{"F64", c10::ScalarType::Double},
                                             {"F32", c10::ScalarType::Float},
                                             {"F16", c10::ScalarType::Half},
                                             {"BF16", c10::ScalarType::BFloat16},
                                             {"I64", c10::ScalarType::Long},
                                             {"I32", c10::ScalarType::Int},
                                             {"I16", c10::ScalarType::Short},
                                             {"I8", c10::ScalarType::Char},
                                             {"U8", c10::ScalarType::Byte},
                                             {"BOOL", c10::ScalarType::Bool}}};

std::string supported_dtypes() {
  std::string out;
  for (const auto& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

struct Entry {
  std::string name;
  c10::ScalarType type;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;   // file offset of the data buffer
  uint64_t buffer_size = 0;  // bytes from data_start to the end of the file
};

uint64_t checked_product(uint64_t a, uint64_t b, bool& overflow) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) overflow = true;
  return a * b;
}

Entry parse_entry(const std::string& path, const std::string& name, const json& value) {
  const auto where = c10::str("safetensors file '", path, "': tensor '", name, "'");
  TORCH_CHECK(value.is_object(), where, " must be a JSON object, got ", value.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    TORCH_CHECK(value.contains(field), where, " has no \"", field, "\" field");
  }
  Entry e;
  e.name = name;
  const auto& dtype = value["dtype"];
  TORCH_CHECK(dtype.is_string(), where, ": \"dtype\" must be a string, got ", dtype.dump());
  const auto dtype_name = dtype.get<std::string>();
  const auto found =
      std::find_if(kDtypes.begin(), kDtypes.end(), [&](const DtypeInfo& d) { return dtype_name == d.name; });
  TORCH_CHECK(found != kDtypes.end(), where, " has unknown dtype \"", dtype_name, "\" (supported: ", supported_dtypes(),
              ")");
  e.type = found->type;

  const auto& shape = value["shape"];
  TORCH_CHECK(shape.is_array(), where, ": \"shape\" must be an array of non-negative integers, got ", shape.dump());
  bool overflow = false;
  uint64_t numel = 1;
  for (const auto& dim : shape) {
    TORCH_CHECK(dim.is_number_unsigned() && dim.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()), where,
                ": \"shape\" must be an array of non-negative integers, got ", shape.dump());
    e.shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
    numel = checked_product(numel, dim.get<uint64_t>(), overflow);
  }
  const uint64_t nbytes = checked_product(numel, c10::elementSize(e.type), overflow);
  TORCH_CHECK(!overflow, where, ": shape ", shape.dump(), " is too large");

  const auto& offsets = value["data_offsets"];
  TORCH_CHECK(
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
      where, ": \"data_offsets\" must be [begin, end] with non-negative integers, got ", offsets.dump());
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  TORCH_CHECK(e.begin <= e.end, where, ": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
  TORCH_CHECK(e.end - e.begin == nbytes, where, ": data_offsets [", e.begin, ", ", e.end, "] span ", e.end - e.begin,
              " bytes but shape ", shape.dump(), " of ", dtype_name, " needs ", nbytes);
  return e;
}

Header read_header(std::ifstream& in, const std::string& path) {
  TORCH_CHECK(host_is_little_endian(), "safetensors: big-endian hosts are not supported (reading '", path, "')");
  TORCH_CHECK(in.is_open(), "cannot open safetensors file '", path, "'");
  std::error_code ec;
  const uint64_t file_size = fs::file_size(path, ec);
  TORCH_CHECK(!ec, "cannot read the size of safetensors file '", path, "': ", ec.message());
  TORCH_CHECK(file_size >= 8, "safetensors file '", path, "' is truncated: ", file_size,
              " bytes, less than the 8-byte header length");
  unsigned char length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  TORCH_CHECK(in.gcount() == 8, "safetensors file '", path, "' is truncated: cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | length_bytes[i];
  TORCH_CHECK(header_len <= kMaxHeaderBytes, "safetensors file '", path, "': header length ", header_len,
              " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  TORCH_CHECK(header_len <= file_size - 8, "safetensors file '", path, "': header length ", header_len,
              " runs past the end of the file (", file_size - 8, " bytes after the length)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  TORCH_CHECK(uint64_t(in.gcount()) == header_len, "safetensors file '", path,
              "' is truncated: cannot read the header");

  // nlohmann keeps the last of duplicate keys silently; a file naming one
  // tensor twice is corrupt, so catch it while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t spot_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
        duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, spot_duplicates);
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "safetensors file '", path, "': header is not valid JSON: ", e.what());
  }
  TORCH_CHECK(header.is_object(), "safetensors file '", path, "': header must be a JSON object, got ",
              header.type_name());
  TORCH_CHECK(duplicate.empty(), "safetensors file '", path, "': header names '", duplicate, "' more than once");

  Header h;
  h.data_start = 8 + header_len;
  h.buffer_size = file_size - h.data_start;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      TORCH_CHECK(item.value().is_object(), "safetensors file '", path,
                  "': __metadata__ must be an object of strings, got ", item.value().dump());
      for (const auto& kv : item.value().items()) {
        TORCH_CHECK(kv.value().is_string(), "safetensors file '", path, "': __metadata__ value of '", kv.key(),
                    "' must be a string, got ", kv.value().dump());
        h.metadata[kv.key()] = kv.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(path, item.key(), item.value()));
  }

  // The reference implementation requires the tensors to tile the buffer
  // exactly; anything else means a corrupt or hand-edited file.
  std::sort(h.entries.begin(), h.entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const auto& e : h.entries) {
    TORCH_CHECK(e.end <= h.buffer_size, "safetensors file '", path, "': tensor '", e.name, "' has data_offsets [",
                e.begin, ", ", e.end, "] out of range of the ", h.buffer_size, "-byte data buffer (file truncated?)");
    TORCH_CHECK(e.begin >= covered, "safetensors file '", path, "': tensor '", e.name, "' (data_offsets [", e.begin,
                ", ", e.end, "]) overlaps tensor '", previous ? previous->name : "", "' (data_offsets [",
                previous ? previous->begin : 0, ", ", covered, "])");
    TORCH_CHECK(e.begin == covered, "safetensors file '", path, "': gap in the data buffer: bytes [", covered, ", ",
                e.begin, ") belong to no tensor (next is '", e.name, "')");
    covered = e.end;
    previous = &e;
  }
  TORCH_CHECK(covered == h.buffer_size, "safetensors file '", path, "': data buffer is ", h.buffer_size,
              " bytes but the tensors cover only ", covered, " (trailing bytes)");
  return h;
}

}  // namespace

SafetensorsContents read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  auto header = read_header(in, path);
  SafetensorsContents out;
  out.metadata = std::move(header.metadata);
  for (const auto& e : header.entries) {
    auto tensor = torch::empty(e.shape, torch::TensorOptions().dtype(e.type));
    const uint64_t nbytes = e.end - e.begin;
    if (nbytes > 0) {
      in.seekg(static_cast<std::streamoff>(header.data_start + e.begin));
      in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(nbytes));
      TORCH_CHECK(in && uint64_t(in.gcount()) == nbytes, "safetensors file '", path,
                  "' is truncated: cannot read the data of tensor '", e.name, "'");
    }
    if (e.type == c10::ScalarType::Bool && nbytes > 0) {
      // Any other byte would be an invalid bool, undefined behaviour in kernels.
      TORCH_CHECK(!tensor.view(torch::kByte).gt(1).any().item<bool>(), "safetensors file '", path, "': BOOL tensor '",
                  e.name, "' holds a byte other than 0 or 1");
    }
    out.tensors.emplace(e.name, std::move(tensor));
  }
  return out;
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  return read_safetensors(path).tensors;
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return read_header(in, path).metadata;
}

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  TORCH_CHECK(host_is_little_endian(), "safetensors: big-endian hosts are not supported (writing '", path, "')");
  // Reference layout: __metadata__ first, then the tensors; every entry's
  // fields in the order dtype, shape, data_offsets.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& kv : tensors) {
    TORCH_CHECK(kv.first != "__metadata__", "save_safetensors('", path,
                "'): '__metadata__' is reserved and cannot name a tensor");
    TORCH_CHECK(kv.second.defined(), "save_safetensors('", path, "'): tensor '", kv.first, "' is undefined");
    const auto type = kv.second.scalar_type();
    const auto found = std::find_if(kDtypes.begin(), kDtypes.end(), [&](const DtypeInfo& d) { return d.type == type; });
    TORCH_CHECK(found != kDtypes.end(), "save_safetensors('", path, "'): tensor '", kv.first, "' has dtype ", type,
                ", which safetensors files cannot hold here (supported: ", supported_dtypes(), ")");
    auto cpu = kv.second.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = cpu.nbytes();
    nlohmann::ordered_json entry;
    entry["dtype"] = found->name;
    entry["shape"] = cpu.sizes().vec();
    entry["data_offsets"] = {offset, offset + nbytes};
    header[kv.first] = std::move(entry);
    offset += nbytes;
    data.push_back(std::move(cpu));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "save_safetensors('", path, "'): names and metadata must be valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));
  try {
    AtomicFile file(path);
    file.write(length_bytes, 8);
    file.write(text);
    for (const auto& t : data) file.write(t.data_ptr(), t.nbytes());
    file.commit();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "save_safetensors('", path, "'): ", e.what_without_backtrace());
  }
}

}  // namespace contaccum
