#include "contaccum/eval/embeddings.h"

#include "contaccum/core/finite_rows.h"

#include "contaccum/core/progress.h"
#include "contaccum/eval/evaluate.h"
#include "contaccum/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>

namespace contaccum {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[] = "\x93NUMPY";

// NumPy format 1.0: magic, version, little-endian header length, a Python
// dict padded with spaces so that the data starts on a 64-byte boundary.
std::string npy_header(int64_t rows, int64_t dim) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                     std::to_string(dim) + "), }";
  const size_t unpadded = 6 + 2 + 2 + dict.size() + 1;
  dict += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out(kMagic, 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}

}  // namespace

// The files are AtomicFiles inside the directory's temporary: a full disk is
// an error naming the file and the system's reason, behind the directory's
// own name (the temporary's is not one the user gave).
namespace {
template <typename Write>
void writing(const std::string& path, Write&& write) {
  try {
    write();
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "cannot write ", path, ": ", e.what_without_backtrace());
  }
}
}  // namespace

std::string detail::info_json_format(const std::string& dir) {
  try {
    std::ifstream in((fs::path(dir) / "info.json").string());
    if (!in) return "";
    const auto j = nlohmann::json::parse(in);
    return j.contains("format") && j["format"].is_string() ? j["format"].get<std::string>() : "";
  } catch (const std::exception&) {
    return "";
  }
}

struct EmbeddingsWriter::Impl {
  std::string path;
  EmbeddingsInfo info;
  AtomicDirectory directory;
  AtomicFile data, ids;
  int64_t written = 0;
  Impl(const std::string& p, EmbeddingsInfo i)
      : path(p),
        info(std::move(i)),
        directory(p, {"an embeddings directory",
                      [](const std::string& dir) { return detail::info_json_format(dir) == "contaccum-embeddings"; }}),
        data((fs::path(directory.temporary_path()) / "embeddings.npy").string()),
        ids((fs::path(directory.temporary_path()) / "ids.txt").string()) {}
};

EmbeddingsWriter::EmbeddingsWriter(const std::string& path, EmbeddingsInfo info) {
  TORCH_CHECK(info.count >= 0 && info.dim > 0, "EmbeddingsWriter: bad shape [", info.count, ", ", info.dim, "]");
  writing(path, [&] {
    impl_ = std::make_unique<Impl>(path, std::move(info));
    impl_->data.write(npy_header(impl_->info.count, impl_->info.dim));
  });
}

EmbeddingsWriter::~EmbeddingsWriter() = default;

void EmbeddingsWriter::append(const torch::Tensor& rows, const std::vector<std::string>& ids) {
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == impl_->info.dim, "EmbeddingsWriter::append: rows must be [n, ",
              impl_->info.dim, "], got ", rows.sizes());
  TORCH_CHECK(static_cast<int64_t>(ids.size()) == rows.size(0), "EmbeddingsWriter::append: ", rows.size(0),
              " rows but ", ids.size(), " ids");
  TORCH_CHECK(impl_->written + rows.size(0) <= impl_->info.count, "EmbeddingsWriter::append: more than the ",
              impl_->info.count, " rows announced");
  const auto values = rows.detach().to(torch::kCPU, torch::kFloat).contiguous();
  TORCH_CHECK(torch::isfinite(values).all().item<bool>(), "EmbeddingsWriter: refusing to write ", impl_->path,
              ": an embedding of rows ", impl_->written, "..", impl_->written + rows.size(0),
              " is not finite (NaN or infinity)");
  std::string lines;
  for (const auto& id : ids) {
    TORCH_CHECK(id.find('\n') == std::string::npos, "EmbeddingsWriter: id '", id, "' holds a newline");
    lines += id + '\n';
  }
  writing(impl_->path, [&] {
    impl_->data.write(values.data_ptr<float>(), static_cast<size_t>(values.numel()) * sizeof(float));
    impl_->ids.write(lines);
  });
  impl_->written += rows.size(0);
}

void EmbeddingsWriter::commit() {
  TORCH_CHECK(impl_->written == impl_->info.count, "EmbeddingsWriter::commit: ", impl_->written, " rows of ",
              impl_->info.count, " written");
  writing(impl_->path, [&] {
    impl_->data.commit();
    impl_->ids.commit();
  });
  const nlohmann::json j = {{"format", "contaccum-embeddings"},
                            {"version", 1},
                            {"count", impl_->info.count},
                            {"dim", impl_->info.dim},
                            {"dtype", "float32"},
                            {"similarity", impl_->info.similarity},
                            {"model", impl_->info.model},
                            {"corpus", impl_->info.corpus},
                            {"model_crc32", impl_->info.model_crc32}};
  writing(impl_->path, [&] {
    write_file_atomically((fs::path(impl_->directory.temporary_path()) / "info.json").string(), j.dump(2) + "\n");
    impl_->directory.commit();
  });
}

EmbeddingsReader::EmbeddingsReader(const std::string& path) : path_(path) {
  const auto dir = fs::path(path);
  const auto info_path = (dir / "info.json").string();
  std::ifstream info_in(info_path);
  TORCH_CHECK(info_in, "no file ", info_path, " (not an embeddings directory written by `contaccum encode`)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(info_in);
    TORCH_CHECK(j.at("format") == "contaccum-embeddings", info_path, ": format must be contaccum-embeddings");
    TORCH_CHECK(j.at("version") == 1 && j.at("dtype") == "float32", info_path,
                ": this contaccum reads version 1, float32");
    info_.count = j.at("count").get<int64_t>();
    info_.dim = j.at("dim").get<int64_t>();
    info_.similarity = j.at("similarity").get<std::string>();
    info_.model = j.value("model", "");
    info_.corpus = j.value("corpus", "");
    info_.model_crc32 = j.value("model_crc32", uint32_t{0});
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, info_path, ": ", e.what());
  }
  TORCH_CHECK(info_.count >= 0 && info_.dim > 0, info_path, ": bad shape [", info_.count, ", ", info_.dim, "]");
  TORCH_CHECK(info_.similarity == "dot" || info_.similarity == "cosine", info_path,
              ": similarity must be dot or cosine, got '", info_.similarity, "'");
  const auto ids_path = (dir / "ids.txt").string();
  std::ifstream ids_in(ids_path);
  TORCH_CHECK(ids_in, "no file ", ids_path);
  for (std::string line; std::getline(ids_in, line);) ids_.push_back(line);
  {
    // A passage id names one row: a duplicate would make search results and
    // judgements ambiguous.
    std::unordered_map<std::string_view, size_t> row_of;
    for (size_t row = 0; row < ids_.size(); ++row) {
      const auto [seen, fresh] = row_of.emplace(ids_[row], row);
      TORCH_CHECK(fresh, ids_path, ": passage id '", ids_[row], "' is on rows ", seen->second, " and ", row);
    }
  }
  TORCH_CHECK(static_cast<int64_t>(ids_.size()) == info_.count, ids_path, ": ", ids_.size(), " ids, info.json says ",
              info_.count);
  const auto data_path = (dir / "embeddings.npy").string();
  data_.open(data_path, std::ios::binary);
  TORCH_CHECK(data_, "no file ", data_path);
  const auto expected = npy_header(info_.count, info_.dim);
  std::string header(expected.size(), '\0');
  data_.read(header.data(), static_cast<std::streamsize>(header.size()));
  TORCH_CHECK(data_.gcount() == static_cast<std::streamsize>(header.size()) && header == expected, data_path,
              ": not a float32 [", info_.count, ", ", info_.dim, "] C-order .npy file");
  data_offset_ = static_cast<int64_t>(header.size());
  const auto size = static_cast<int64_t>(fs::file_size(data_path));
  TORCH_CHECK(size == data_offset_ + info_.count * info_.dim * 4, data_path, ": ", size, " bytes, expected ",
              data_offset_ + info_.count * info_.dim * 4, " (truncated?)");
}

torch::Tensor EmbeddingsReader::read(int64_t begin, int64_t end) {
  TORCH_CHECK(0 <= begin && begin <= end && end <= info_.count, "EmbeddingsReader::read: rows [", begin, ", ", end,
              ") outside [0, ", info_.count, ")");
  auto out = torch::empty({end - begin, info_.dim}, torch::kFloat);
  data_.clear();
  data_.seekg(data_offset_ + begin * info_.dim * 4);
  const auto bytes = static_cast<std::streamsize>(out.numel() * 4);
  data_.read(reinterpret_cast<char*>(out.data_ptr<float>()), bytes);
  TORCH_CHECK(data_.gcount() == bytes, path_, "/embeddings.npy: cannot read rows ", begin, "..", end);
  // `encode` never writes one; a NaN would rank silently wrong.
  const int64_t bad = first_non_finite_row(out);
  TORCH_CHECK(bad < 0, path_, "/embeddings.npy: row ", begin + bad,
              " holds a NaN or an infinity (not written by contaccum encode, or damaged)");
  return out;
}

int64_t encode_corpus(DualEncoder& model, const TextEncoderFn& tokenize, const PassageSource& corpus,
                      const std::string& path, const EncodeCorpusOptions& options, Collective& collective) {
  TORCH_CHECK(options.batch_size() > 0, "EncodeCorpusOptions::batch_size must be > 0, got ", options.batch_size());
  TORCH_CHECK(options.block_rows() > 0, "EncodeCorpusOptions::block_rows must be > 0, got ", options.block_rows());
  const int64_t rows = corpus.size(), world = collective.world_size(), rank = collective.rank();
  EmbeddingsInfo info;
  info.count = rows;
  info.dim = model->dim();
  info.similarity = enum_name(model->options().similarity());
  info.model = options.model_path();
  info.corpus = options.corpus_path();
  info.model_crc32 = weights_crc32(*model);
  std::unique_ptr<EmbeddingsWriter> writer;
  if (rank == 0) writer = std::make_unique<EmbeddingsWriter>(path, info);
  ProgressReporter progress("encode", rows, "passages", !options.progress() || rank != 0);
  // Block by block: each rank encodes its contiguous part of the block, in
  // whole encoder batches (the batches of one process, so the same vectors
  // bit for bit whatever the number of ranks, when blocks are whole batches).
  corpus.for_each_block(0, rows, options.block_rows(), [&](int64_t, const TextTable& block) {
    const int64_t batch = options.batch_size();
    auto counts = contiguous_shares((block.size() + batch - 1) / batch, world);
    int64_t left = block.size();
    for (auto& c : counts) {
      c = std::min(left, c * batch);
      left -= c;
    }
    int64_t first = 0;
    for (int64_t r = 0; r < rank; ++r) first += counts[static_cast<size_t>(r)];
    TextTable share;
    for (int64_t row = first; row < first + counts[static_cast<size_t>(rank)]; ++row) {
      share.add(block.id(row), block.title(row), block.text(row));
    }
    auto mine = share.empty()
                    ? torch::empty({0, info.dim}, torch::kFloat)
                    : encode_passages(model, share, tokenize, options.passage_max_length(), options.batch_size());
    auto shares = all_gather_rows(collective, mine, counts);
    if (writer) {
      std::vector<std::string> ids;
      for (int64_t row = 0; row < block.size(); ++row) ids.emplace_back(block.id(row));
      writer->append(world == 1 ? mine : torch::cat(shares), ids);
    }
    progress.advance(block.size());
  });
  if (writer) writer->commit();
  progress.finish();
  return rows;
}

int64_t encode_corpus(DualEncoder& model, const TextEncoderFn& tokenize, const TextTable& corpus,
                      const std::string& path, const EncodeCorpusOptions& options, Collective& collective) {
  return encode_corpus(model, tokenize, TablePassages(corpus), path, options, collective);
}

}  // namespace contaccum
