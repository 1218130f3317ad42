#include "passage_vectors.h"

#include "cli_checks.h"
#include "data_args.h"

namespace contaccum::cli {

void PassageVectorsArgs::add_to(CLI::App* app, const std::string& instead_of) {
  app->add_option("--embeddings", embeddings_,
                  "search these passage embeddings (`contaccum encode`) instead of " + instead_of)
      ->check(CLI::ExistingDirectory);
  app->add_option("--index", index_,
                  "search this vector index (`contaccum index build`) instead of exact search "
                  "(approximate for ivf and hnsw)")
      ->check(CLI::ExistingDirectory);
  app->add_option("--nprobe", nprobe_, "with an ivf --index: cells visited per query (default: the index's)")
      ->check(cli::positive());
  app->add_option("--ef-search", ef_search_, "with an hnsw --index: candidate list (default: the index's)")
      ->check(cli::positive());
}

void PassageVectorsArgs::check() const {
  TORCH_CHECK(embeddings_.empty() || index_.empty(), "give --embeddings or --index, not both");
  TORCH_CHECK(!index_.empty() || (nprobe_ == 0 && ef_search_ == 0), "--nprobe and --ef-search need --index");
}

EmbeddingsReader PassageVectorsArgs::open_embeddings(const PassageSource& corpus, DualEncoder* model) const {
  EmbeddingsReader reader(embeddings_);
  const auto what = "--embeddings " + embeddings_;
  check_passage_ids(reader.ids(), corpus, what);
  if (model) {
    check_passage_vectors(*model, reader.info().dim, reader.info().similarity, what, reader.info().model_crc32,
                          reader.info().model);
  }
  return reader;
}

VectorIndex PassageVectorsArgs::open_index(const PassageSource& corpus, DualEncoder* model) const {
  auto index = VectorIndex::load(index_);
  const auto what = "--index " + index_;
  check_passage_ids(index.ids(), corpus, what);
  if (model) check_passage_vectors(*model, index.dim(), index.options().similarity(), what, index.model_crc32());
  const auto type = index.options().type();
  TORCH_CHECK(nprobe_ == 0 || type == IndexType::Ivf, "--nprobe applies to an ivf index; ", what, " is ",
              index_type_name(type));
  TORCH_CHECK(ef_search_ == 0 || type == IndexType::Hnsw, "--ef-search applies to an hnsw index; ", what, " is ",
              index_type_name(type));
  if (nprobe_ > 0) index.set_nprobe(nprobe_);
  if (ef_search_ > 0) index.set_ef_search(ef_search_);
  return index;
}

}  // namespace contaccum::cli
