#include "contaccum/eval/vector_index.h"

#include "contaccum/core/error_text.h"

#include "contaccum/core/finite_rows.h"
#include "contaccum/core/progress.h"
#include "contaccum/io/atomic_file.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

namespace contaccum {
namespace fs = std::filesystem;

IndexType index_type(const std::string& name) {
  if (name == "flat") return IndexType::Flat;
  if (name == "ivf") return IndexType::Ivf;
  if (name == "hnsw") return IndexType::Hnsw;
  TORCH_CHECK(false, "index type must be flat, ivf or hnsw, got '", name, "'");
}

std::string index_type_name(IndexType type) {
  switch (type) {
    case IndexType::Flat:
      return "flat";
    case IndexType::Ivf:
      return "ivf";
    case IndexType::Hnsw:
      return "hnsw";
  }
  return "?";
}

namespace {

// FAISS reports errors by exception; ours name the operation and the file.
template <typename Fn>
auto faiss_call(const std::string& what, Fn&& fn) {
  try {
    return fn();
  } catch (const faiss::FaissException& e) {
    TORCH_CHECK(false, what, ": ", e.what());
  }
}

// Rows FAISS can take: float32, contiguous, on the CPU, finite, and of unit
// norm when the model scores by cosine (the index does not normalise: a
// renormalised vector differs in its last bits, and flat search must equal
// evaluation's exactly).
torch::Tensor checked_rows(const torch::Tensor& rows, int64_t dim, const std::string& similarity, const char* fn) {
  TORCH_CHECK(rows.defined() && rows.dim() == 2 && rows.size(1) == dim, fn, ": rows must be [n, ", dim, "], got ",
              rows.defined() ? c10::str(rows.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(rows.is_floating_point(), fn, ": rows must be floating point, got ", rows.scalar_type());
  auto values = rows.detach().to(torch::kCPU, torch::kFloat).contiguous();
  if (values.size(0) == 0) return values;
  const auto finite = torch::isfinite(values).all(1);
  if (!finite.all().item<bool>()) {
    const auto bad = (~finite).nonzero()[0][0].item<int64_t>();
    TORCH_CHECK(false, fn, ": row ", bad, " is not finite (NaN or infinity)");
  }
  if (similarity == "cosine") {
    const auto off = (values.norm(2, 1) - 1).abs();
    const auto worst = off.argmax().item<int64_t>();
    TORCH_CHECK(off[worst].item<double>() <= 1e-4, fn, ": similarity is cosine but row ", worst, " has norm ",
                values[worst].norm().item<double>(), " (normalise the vectors; a cosine model's embeddings are)");
  }
  return values;
}

uint32_t file_crc32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot read ", path);
  std::vector<char> buffer(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(in.gcount()));
  }
  return static_cast<uint32_t>(crc);
}

int64_t default_nlist(int64_t rows) {
  const auto by_sqrt = static_cast<int64_t>(std::lround(4.0 * std::sqrt(static_cast<double>(rows))));
  return std::max<int64_t>(1, std::min(by_sqrt, rows / 39));
}

void check_options(const VectorIndexOptions& o) {
  TORCH_CHECK(o.similarity() == "dot" || o.similarity() == "cosine",
              "VectorIndexOptions::similarity must be dot or cosine, got '", o.similarity(), "'");
  TORCH_CHECK(o.nlist() >= 0, "VectorIndexOptions::nlist must be >= 0, got ", o.nlist());
  TORCH_CHECK(o.nprobe() > 0, "VectorIndexOptions::nprobe must be > 0, got ", o.nprobe());
  TORCH_CHECK(o.hnsw_m() > 1, "VectorIndexOptions::hnsw_m must be > 1, got ", o.hnsw_m());
  TORCH_CHECK(o.ef_construction() > 0, "VectorIndexOptions::ef_construction must be > 0, got ", o.ef_construction());
  TORCH_CHECK(o.ef_search() > 0, "VectorIndexOptions::ef_search must be > 0, got ", o.ef_search());
  TORCH_CHECK(o.train_rows() >= 0, "VectorIndexOptions::train_rows must be >= 0, got ", o.train_rows());
}

}  // namespace

struct VectorIndex::Impl {
  int64_t dim = 0;
  VectorIndexOptions options;
  std::unique_ptr<faiss::Index> index;  // IVF: null until trained
  std::vector<std::string> ids;
  bool keeps_ids = false;
  uint32_t model_crc32 = 0;

  faiss::IndexFlat* flat() const { return dynamic_cast<faiss::IndexFlat*>(index.get()); }
  faiss::IndexIVFFlat* ivf() const { return dynamic_cast<faiss::IndexIVFFlat*>(index.get()); }
  faiss::IndexHNSWFlat* hnsw() const { return dynamic_cast<faiss::IndexHNSWFlat*>(index.get()); }
};

VectorIndex::VectorIndex(int64_t dim, VectorIndexOptions options) : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(dim > 0, "VectorIndex: dim must be > 0, got ", dim);
  check_options(options);
  impl_->dim = dim;
  impl_->options = options;
  if (options.type() == IndexType::Flat) {
    impl_->index = std::make_unique<faiss::IndexFlatIP>(dim);
  } else if (options.type() == IndexType::Hnsw) {
    auto hnsw =
        std::make_unique<faiss::IndexHNSWFlat>(dim, static_cast<int>(options.hnsw_m()), faiss::METRIC_INNER_PRODUCT);
    hnsw->hnsw.efConstruction = static_cast<int>(options.ef_construction());
    hnsw->hnsw.efSearch = static_cast<int>(options.ef_search());
    impl_->index = std::move(hnsw);
  }
}

VectorIndex::VectorIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VectorIndex::~VectorIndex() = default;
VectorIndex::VectorIndex(VectorIndex&&) noexcept = default;
VectorIndex& VectorIndex::operator=(VectorIndex&&) noexcept = default;

void VectorIndex::train(const torch::Tensor& sample) {
  if (impl_->options.type() != IndexType::Ivf) return;
  TORCH_CHECK(!impl_->index, "VectorIndex::train: the IVF index is trained already");
  const auto rows = checked_rows(sample, impl_->dim, impl_->options.similarity(), "VectorIndex::train");
  const int64_t nlist = impl_->options.nlist() > 0 ? impl_->options.nlist() : default_nlist(rows.size(0));
  TORCH_CHECK(rows.size(0) >= nlist, "VectorIndex::train: ", rows.size(0), " rows cannot train ", nlist,
              " IVF cells (give at least nlist rows, ideally 39 per cell)");
  auto quantizer = std::make_unique<faiss::IndexFlatIP>(impl_->dim);
  auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), impl_->dim, static_cast<size_t>(nlist),
                                                   faiss::METRIC_INNER_PRODUCT);
  quantizer.release();
  ivf->own_fields = true;
  ivf->cp.seed = static_cast<int>(impl_->options.seed());
  ivf->cp.spherical = impl_->options.similarity() == "cosine";
  ivf->cp.max_points_per_centroid = std::numeric_limits<int>::max();  // the caller chose the sample
  ivf->nprobe = static_cast<size_t>(std::min(impl_->options.nprobe(), nlist));
  faiss_call("VectorIndex::train", [&] {
    ivf->train(rows.size(0), rows.data_ptr<float>());
    return 0;
  });
  impl_->options.nlist(nlist);
  impl_->index = std::move(ivf);
}

bool VectorIndex::is_trained() const { return impl_->index && impl_->index->is_trained; }

void VectorIndex::add(const torch::Tensor& rows, const std::vector<std::string>& ids) {
  TORCH_CHECK(is_trained(), "VectorIndex::add: an IVF index must be trained first (VectorIndex::train)");
  const auto values = checked_rows(rows, impl_->dim, impl_->options.similarity(), "VectorIndex::add");
  if (size() == 0 && impl_->ids.empty()) impl_->keeps_ids = !ids.empty();
  TORCH_CHECK(impl_->keeps_ids ? static_cast<int64_t>(ids.size()) == values.size(0) : ids.empty(),
              "VectorIndex::add: ", values.size(0), " rows with ", ids.size(),
              " ids (give ids with every add or with none)");
  TORCH_CHECK(size() + values.size(0) <= std::numeric_limits<int32_t>::max(),
              "VectorIndex::add: FAISS numbers rows with 32 bits in HNSW graphs; at most 2^31 - 1 rows");
  faiss_call("VectorIndex::add", [&] {
    impl_->index->add(values.size(0), values.data_ptr<float>());
    return 0;
  });
  impl_->ids.insert(impl_->ids.end(), ids.begin(), ids.end());
}

SearchResult VectorIndex::search(const torch::Tensor& queries, int64_t k) const {
  TORCH_CHECK(k > 0, "VectorIndex::search: k must be > 0, got ", k);
  const auto q = checked_rows(queries, impl_->dim, impl_->options.similarity(), "VectorIndex::search");
  const int64_t kept = std::min(k, size());
  if (kept == 0 || q.size(0) == 0) {
    return {torch::empty({q.size(0), kept}, torch::kFloat), torch::empty({q.size(0), kept}, torch::kLong)};
  }
  if (auto* flat = impl_->flat()) {
    // Exact search over FAISS's stored vectors: evaluation's own ranking.
    const auto corpus = torch::from_blob(flat->get_xb(), {size(), impl_->dim}, torch::kFloat);
    return exact_search(q, corpus, SearchOptions().k(kept));
  }
  auto scores = torch::empty({q.size(0), kept}, torch::kFloat);
  auto rows = torch::empty({q.size(0), kept}, torch::kLong);
  faiss::SearchParametersIVF ivf_params;
  faiss::SearchParametersHNSW hnsw_params;
  const faiss::SearchParameters* params = nullptr;
  if (auto* ivf = impl_->ivf()) {
    ivf_params.nprobe = std::min<size_t>(static_cast<size_t>(impl_->options.nprobe()), ivf->nlist);
    params = &ivf_params;
  } else {
    hnsw_params.efSearch = static_cast<int>(std::max(impl_->options.ef_search(), kept));
    params = &hnsw_params;
  }
  faiss_call("VectorIndex::search", [&] {
    impl_->index->search(q.size(0), q.data_ptr<float>(), kept, scores.data_ptr<float>(), rows.data_ptr<int64_t>(),
                         params);
    return 0;
  });
  scores.masked_fill_(rows < 0, -std::numeric_limits<float>::infinity());
  rows.masked_fill_(rows < 0, -1);
  return {scores, rows};
}

void VectorIndex::set_nprobe(int64_t nprobe) {
  TORCH_CHECK(nprobe > 0, "VectorIndex::set_nprobe: nprobe must be > 0, got ", nprobe);
  impl_->options.nprobe(nprobe);
  if (auto* ivf = impl_->ivf()) ivf->nprobe = std::min<size_t>(static_cast<size_t>(nprobe), ivf->nlist);
}

void VectorIndex::set_ef_search(int64_t ef_search) {
  TORCH_CHECK(ef_search > 0, "VectorIndex::set_ef_search: ef_search must be > 0, got ", ef_search);
  impl_->options.ef_search(ef_search);
  if (auto* hnsw = impl_->hnsw()) hnsw->hnsw.efSearch = static_cast<int>(ef_search);
}

int64_t VectorIndex::size() const { return impl_->index ? impl_->index->ntotal : 0; }
int64_t VectorIndex::dim() const { return impl_->dim; }
const VectorIndexOptions& VectorIndex::options() const { return impl_->options; }
const std::vector<std::string>& VectorIndex::ids() const { return impl_->ids; }

uint32_t VectorIndex::model_crc32() const { return impl_->model_crc32; }

void VectorIndex::set_model_crc32(uint32_t crc) { impl_->model_crc32 = crc; }

int64_t VectorIndex::memory_bytes() const {
  if (auto* flat = impl_->flat()) return static_cast<int64_t>(flat->codes.size());
  if (auto* ivf = impl_->ivf()) {
    int64_t bytes = ivf->quantizer->ntotal * impl_->dim * static_cast<int64_t>(sizeof(float));
    for (size_t list = 0; list < ivf->nlist; ++list) {
      bytes += static_cast<int64_t>(ivf->invlists->list_size(list) *
                                    (ivf->code_size + sizeof(decltype(faiss::Index::ntotal))));
    }
    return bytes;
  }
  if (auto* hnsw = impl_->hnsw()) {
    const auto& graph = hnsw->hnsw;
    return static_cast<int64_t>(dynamic_cast<faiss::IndexFlat*>(hnsw->storage)->codes.size() +
                                graph.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
                                graph.offsets.size() * sizeof(size_t) + graph.levels.size() * sizeof(int));
  }
  return 0;
}

void VectorIndex::save(const std::string& path) const {
  TORCH_CHECK(is_trained(), "VectorIndex::save: an untrained IVF index has nothing to save");
  AtomicDirectory directory(path, {"an index directory", [](const std::string& dir) {
                                     return detail::info_json_format(dir) == "contaccum-index";
                                   }});
  const auto dir = fs::path(directory.temporary_path());
  const auto index_path = (dir / "index.faiss").string();
  faiss_call("cannot write " + path + "/index.faiss", [&] {
    faiss::write_index(impl_->index.get(), index_path.c_str());
    return 0;
  });
  std::string ids;
  for (const auto& id : impl_->ids) {
    TORCH_CHECK(id.find('\n') == std::string::npos, "VectorIndex::save: id '", id, "' holds a newline");
    ids += id + '\n';
  }
  // Atomic files: a full disk is an error naming the file and the reason.
  write_file_atomically((dir / "ids.txt").string(), ids);
  const auto& o = impl_->options;
  const nlohmann::json info = {{"format", "contaccum-index"},
                               {"version", 1},
                               {"type", index_type_name(o.type())},
                               {"similarity", o.similarity()},
                               {"count", size()},
                               {"dim", impl_->dim},
                               {"ids", impl_->keeps_ids},
                               {"nlist", o.nlist()},
                               {"nprobe", o.nprobe()},
                               {"hnsw_m", o.hnsw_m()},
                               {"ef_construction", o.ef_construction()},
                               {"ef_search", o.ef_search()},
                               {"index_crc32", file_crc32(index_path)},
                               {"model_crc32", impl_->model_crc32}};
  write_file_atomically((dir / "info.json").string(), info.dump(2) + "\n");
  directory.commit();
}

namespace {

nlohmann::json read_index_info(const std::string& info_path) {
  std::ifstream in(info_path);
  TORCH_CHECK(in, "no file ", info_path, " (not an index directory written by `contaccum index build`)");
  try {
    auto j = nlohmann::json::parse(in);
    TORCH_CHECK(j.at("format") == "contaccum-index", info_path, ": format must be contaccum-index, got ",
                j.at("format").dump());
    TORCH_CHECK(j.at("version") == 1, info_path, ": this contaccum reads version 1, got ", j.at("version").dump());
    for (const char* key : {"type", "similarity", "count", "dim", "ids", "nlist", "nprobe", "hnsw_m", "ef_construction",
                            "ef_search", "index_crc32"}) {
      TORCH_CHECK(j.contains(key), info_path, ": key '", key, "' is missing");
    }
    return j;
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, info_path, ": ", error_text(e));
  }
}

// The FAISS index must be the kind info.json names, score by inner product
// and hold what info.json says.
void check_loaded(const faiss::Index& index, const VectorIndexOptions& o, int64_t dim, int64_t count,
                  const std::string& index_path) {
  TORCH_CHECK(index.metric_type == faiss::METRIC_INNER_PRODUCT, index_path, " scores by ",
              index.metric_type == faiss::METRIC_L2 ? std::string("L2 distance")
                                                    : "metric " + std::to_string(index.metric_type),
              "; contaccum's indexes score by inner product (METRIC_INNER_PRODUCT)");
  const bool kind_ok = (o.type() == IndexType::Flat && dynamic_cast<const faiss::IndexFlat*>(&index)) ||
                       (o.type() == IndexType::Ivf && dynamic_cast<const faiss::IndexIVFFlat*>(&index)) ||
                       (o.type() == IndexType::Hnsw && dynamic_cast<const faiss::IndexHNSWFlat*>(&index));
  TORCH_CHECK(kind_ok, index_path, " is not the ", index_type_name(o.type()), " index info.json names");
  TORCH_CHECK(index.d == dim && index.ntotal == count, index_path, " holds ", index.ntotal, " vectors of width ",
              index.d, "; info.json says ", count, " of width ", dim);
}

// What makes the stored vectors unsearchable ("stored vector row N is not
// finite", N in the order vectors were added), or "" when nothing does. The CRC-32 proves the file is the one
// written; this proves what was written can be searched: a NaN vector makes
// every score against it NaN and the ranking meaningless, and FAISS files
// written by other tools are not checked on add as ours are.
std::string non_finite_vector(const faiss::Index& index) {
  const auto rows_of = [&](const float* data, int64_t n) {
    return first_non_finite_row(torch::from_blob(const_cast<float*>(data), {n, index.d}, torch::kFloat));
  };
  const faiss::IndexFlat* flat = dynamic_cast<const faiss::IndexFlat*>(&index);
  if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSWFlat*>(&index)) {
    flat = dynamic_cast<const faiss::IndexFlat*>(hnsw->storage);
  }
  if (flat != nullptr) {
    const auto bad = flat->ntotal > 0 ? rows_of(flat->get_xb(), flat->ntotal) : -1;
    return bad < 0 ? "" : "stored vector row " + std::to_string(bad) + " is not finite (NaN or infinity)";
  }
  const auto* ivf = dynamic_cast<const faiss::IndexIVFFlat*>(&index);
  if (ivf == nullptr) return "";
  if (const auto* centroids = dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer)) {
    const auto bad = centroids->ntotal > 0 ? rows_of(centroids->get_xb(), centroids->ntotal) : -1;
    if (bad >= 0) return "cell centroid " + std::to_string(bad) + " is not finite (NaN or infinity)";
  }
  int64_t held = 0;
  for (size_t list = 0; list < ivf->nlist; ++list) {
    const auto n = static_cast<int64_t>(ivf->invlists->list_size(list));
    held += n;
    if (n == 0) continue;
    faiss::InvertedLists::ScopedCodes codes(ivf->invlists, list);
    const auto bad = rows_of(reinterpret_cast<const float*>(codes.get()), n);
    if (bad >= 0) {
      faiss::InvertedLists::ScopedIds ids(ivf->invlists, list);
      return "stored vector row " + std::to_string(ids[static_cast<size_t>(bad)]) + " is not finite (NaN or infinity)";
    }
  }
  // FAISS assigns a vector that is not finite to no cell and drops it.
  if (held != ivf->ntotal) {
    return "its cells hold " + std::to_string(held) + " of its " + std::to_string(ivf->ntotal) +
           " vectors (FAISS drops a vector that is not finite)";
  }
  return "";
}

}  // namespace

VectorIndex VectorIndex::load(const std::string& path) {
  const auto dir = fs::path(path);
  const auto info_path = (dir / "info.json").string(), index_path = (dir / "index.faiss").string();
  const auto info = read_index_info(info_path);
  VectorIndexOptions o;
  int64_t dim = 0, count = 0;
  bool keeps_ids = false;
  uint32_t crc = 0, model_crc32 = 0;
  try {
    o.type(index_type(info.at("type").get<std::string>()))
        .similarity(info.at("similarity").get<std::string>())
        .nlist(info.at("nlist").get<int64_t>())
        .nprobe(info.at("nprobe").get<int64_t>())
        .hnsw_m(info.at("hnsw_m").get<int64_t>())
        .ef_construction(info.at("ef_construction").get<int64_t>())
        .ef_search(info.at("ef_search").get<int64_t>());
    dim = info.at("dim").get<int64_t>();
    count = info.at("count").get<int64_t>();
    keeps_ids = info.at("ids").get<bool>();
    crc = info.at("index_crc32").get<uint32_t>();
    model_crc32 = info.value("model_crc32", uint32_t{0});
  } catch (const std::exception& e) {
    TORCH_CHECK(false, info_path, ": ", error_text(e));
  }
  try {
    check_options(o);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, info_path, ": ", e.what_without_backtrace());
  }
  TORCH_CHECK(dim > 0 && count >= 0, info_path, ": bad shape [", count, ", ", dim, "]");
  TORCH_CHECK(fs::exists(index_path), "no file ", index_path);
  const auto actual = file_crc32(index_path);
  TORCH_CHECK(actual == crc, index_path, " is damaged: its CRC-32 is ", actual, ", info.json says ", crc);
  auto impl = std::make_unique<Impl>();
  impl->dim = dim;
  impl->options = o;
  impl->keeps_ids = keeps_ids;
  impl->model_crc32 = model_crc32;
  impl->index.reset(faiss_call("cannot read " + index_path, [&] { return faiss::read_index(index_path.c_str()); }));
  check_loaded(*impl->index, o, dim, count, index_path);
  const auto bad = non_finite_vector(*impl->index);
  TORCH_CHECK(bad.empty(), index_path, ": ", bad, "; rebuild the index from finite embeddings");
  if (keeps_ids) {
    const auto ids_path = (dir / "ids.txt").string();
    std::ifstream ids(ids_path);
    TORCH_CHECK(ids, "no file ", ids_path);
    for (std::string line; std::getline(ids, line);) impl->ids.push_back(line);
    TORCH_CHECK(static_cast<int64_t>(impl->ids.size()) == count, ids_path, ": ", impl->ids.size(),
                " ids, info.json says ", count);
  }
  VectorIndex index(std::move(impl));
  index.set_nprobe(o.nprobe());
  index.set_ef_search(o.ef_search());
  return index;
}

VectorIndex build_vector_index(EmbeddingsReader& embeddings, VectorIndexOptions options, bool progress,
                               int64_t block_rows) {
  TORCH_CHECK(block_rows > 0, "build_vector_index: block_rows must be > 0, got ", block_rows);
  const auto& info = embeddings.info();
  options.similarity(info.similarity);
  VectorIndex index(info.dim, options);
  if (options.type() == IndexType::Ivf) {
    TORCH_CHECK(info.count > 0,
                "build_vector_index: an IVF index needs embeddings to train on; the directory is empty");
    // The cells are sized for the whole corpus; k-means sees a seeded sample.
    const int64_t nlist = options.nlist() > 0 ? options.nlist() : default_nlist(info.count);
    const int64_t wanted = options.train_rows() > 0 ? options.train_rows() : 256 * nlist;
    const int64_t sample_rows = std::min(info.count, wanted);
    std::vector<int64_t> rows(static_cast<size_t>(info.count));
    std::iota(rows.begin(), rows.end(), 0);
    std::mt19937_64 generator(static_cast<uint64_t>(options.seed()));
    std::shuffle(rows.begin(), rows.end(), generator);
    rows.resize(static_cast<size_t>(sample_rows));
    std::sort(rows.begin(), rows.end());
    std::vector<torch::Tensor> parts;
    ProgressReporter sampling("index: sample", info.count, "passages", !progress);
    for (int64_t begin = 0, next = 0; begin < info.count; begin += block_rows) {
      const int64_t end = std::min(info.count, begin + block_rows);
      std::vector<int64_t> picked;
      for (; next < sample_rows && rows[static_cast<size_t>(next)] < end; ++next) {
        picked.push_back(rows[static_cast<size_t>(next)] - begin);
      }
      if (!picked.empty()) parts.push_back(embeddings.read(begin, end).index_select(0, torch::tensor(picked)));
      sampling.advance(end - begin);
    }
    sampling.finish();
    index = VectorIndex(info.dim, options.nlist(nlist));
    index.train(torch::cat(parts));
  }
  index.set_model_crc32(info.model_crc32);
  ProgressReporter adding("index: add", info.count, "passages", !progress);
  for (int64_t begin = 0; begin < info.count; begin += block_rows) {
    const int64_t end = std::min(info.count, begin + block_rows);
    index.add(embeddings.read(begin, end),
              std::vector<std::string>(embeddings.ids().begin() + begin, embeddings.ids().begin() + end));
    adding.advance(end - begin);
  }
  adding.finish();
  return index;
}

}  // namespace contaccum
