// contaccum index build --embeddings EMB --type flat|ivf|hnsw --output DIR [--nlist N --nprobe N --train-rows N
//                       --hnsw-m M --ef-construction N --ef-search N --seed S]
#include "cli_checks.h"
#include "command.h"

#include <contaccum/contaccum.h>

#include <nlohmann/json.hpp>

#include <iostream>

namespace contaccum::cli {
namespace {

class IndexCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("index", "build a vector index (FAISS) over passage embeddings");
    app_->require_subcommand(1);
    build_ = app_->add_subcommand("build", "index an embeddings directory (`contaccum encode`)");
    build_->add_option("--embeddings", embeddings_, "embeddings directory written by `contaccum encode`")
        ->required()
        ->check(CLI::ExistingDirectory);
    build_->add_option("--type", type_, "flat (exact), ivf (inverted lists) or hnsw (graph)")
        ->check(CLI::IsMember({"flat", "ivf", "hnsw"}));
    build_->add_option("--output", output_, "index directory to write")->required();
    const VectorIndexOptions d;
    build_->add_option("--nlist", nlist_, "ivf: cells (0: 4 sqrt(passages), at most passages / 39)")
        ->check(cli::non_negative());
    build_->add_option("--nprobe", nprobe_, "ivf: cells visited per query")->check(cli::positive());
    build_->add_option("--train-rows", train_rows_, "ivf: rows k-means trains on (0: 256 per cell)")
        ->check(cli::non_negative());
    build_->add_option("--hnsw-m", hnsw_m_, "hnsw: links per vector")->check(cli::number_in(2, 1024));
    build_->add_option("--ef-construction", ef_construction_, "hnsw: candidate list while adding")
        ->check(cli::positive());
    build_->add_option("--ef-search", ef_search_, "hnsw: candidate list while searching")->check(cli::positive());
    build_->add_option("--seed", seed_, "ivf: seed of the training sample and k-means");
    nlist_ = d.nlist(), nprobe_ = d.nprobe(), train_rows_ = d.train_rows(), hnsw_m_ = d.hnsw_m();
    ef_construction_ = d.ef_construction(), ef_search_ = d.ef_search(), seed_ = d.seed();
  }

  int run() override {
    const Stopwatch watch;
    // Knobs of another index type would be ignored (and reported as set).
    for (const char* ivf : {"--nlist", "--nprobe", "--train-rows", "--seed"}) {
      TORCH_CHECK(build_->count(ivf) == 0 || type_ == "ivf", ivf, " applies to --type ivf, not ", type_);
    }
    for (const char* hnsw : {"--hnsw-m", "--ef-construction", "--ef-search"}) {
      TORCH_CHECK(build_->count(hnsw) == 0 || type_ == "hnsw", hnsw, " applies to --type hnsw, not ", type_);
    }
    EmbeddingsReader embeddings(embeddings_);
    const auto options = VectorIndexOptions()
                             .type(index_type(type_))
                             .nlist(nlist_)
                             .nprobe(nprobe_)
                             .train_rows(train_rows_)
                             .hnsw_m(hnsw_m_)
                             .ef_construction(ef_construction_)
                             .ef_search(ef_search_)
                             .seed(seed_);
    const auto index = build_vector_index(embeddings, options, true);
    const double build_seconds = watch.seconds();
    index.save(output_);
    std::cout << nlohmann::json({{"output", output_},
                                 {"type", type_},
                                 {"passages", index.size()},
                                 {"dim", index.dim()},
                                 {"similarity", index.options().similarity()},
                                 {"nlist", index.options().nlist()},
                                 {"memory_bytes", index.memory_bytes()},
                                 {"build_seconds", build_seconds},
                                 {"seconds", watch.seconds()}})
                     .dump()
              << std::endl;
    return 0;
  }

 private:
  CLI::App* build_ = nullptr;
  std::string embeddings_, type_ = "flat", output_;
  int64_t nlist_ = 0, nprobe_ = 0, train_rows_ = 0, hnsw_m_ = 0, ef_construction_ = 0, ef_search_ = 0, seed_ = 0;
};

}  // namespace

std::unique_ptr<Command> index_command() { return std::make_unique<IndexCommand>(); }

}  // namespace contaccum::cli
