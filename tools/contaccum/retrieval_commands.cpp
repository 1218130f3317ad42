// contaccum encode --model DIR --corpus corpus.jsonl --output EMB [--skip-bad-records] [--batch-size N]
//                  [--nproc-per-node W]
// contaccum search --model DIR --corpus corpus.jsonl [--embeddings EMB | --index DIR [--nprobe N] [--ef-search N]]
//                  [--hybrid-bm25 ...] [--k 10] [QUERY...]
#include "cli_checks.h"
#include "command.h"
#include "data_args.h"
#include "passage_vectors.h"
#include "workers.h"

#include <contaccum/contaccum.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace contaccum::cli {
namespace {

class EncodeCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("encode", "write a corpus's passage embeddings (NumPy .npy + ids) for reuse");
    app_->add_option("--model", model_dir_, "a model directory written by `contaccum train`")
        ->required()
        ->check(CLI::ExistingDirectory);
    app_->add_option("--corpus", corpus_, "BEIR corpus.jsonl")->required()->check(CLI::ExistingFile);
    app_->add_option("--output", output_, "embeddings directory to write")->required();
    add_device_option(app_, device_);
    app_->add_option("--batch-size", batch_size_, "passages encoded at once")->check(cli::positive());
    app_->add_option("--passage-max-length", passage_max_length_, "token limit of passages (default: the model's)")
        ->check(cli::token_limit());
    app_->add_flag("--skip-bad-records", skip_bad_records_, "skip (and count) malformed records instead of stopping");
    app_->add_option("--nproc-per-node", nproc_,
                     "encode with this many worker processes, each a contiguous share of every block (rank 0 "
                     "writes); workers started by a launcher read RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT")
        ->check(cli::parallelism(1));
  }

  int run() override {
    const Stopwatch watch;
    const auto env = DistributedEnvironment::from_environment();
    if (nproc_ > 1 && !env) return launch_workers("encode", nproc_);
    std::shared_ptr<Collective> collective = local_collective();
    if (env && env->world_size > 1) collective = join_workers(*env, DistributedOptions(), 0);
    // Read from the file a block at a time: memory is one block.
    const auto corpus = open_corpus(corpus_, skip_bad_records_);
    auto model = load_model_on(model_dir_, device_);
    const auto rows =
        encode_corpus(model.model, model.text_encoder(), corpus, output_,
                      EncodeCorpusOptions()
                          .batch_size(batch_size_)
                          .passage_max_length(passage_max_length_ > 0 ? passage_max_length_
                                                                      : model.config.lengths.passage_max_length())
                          .model_path(model_dir_)
                          .corpus_path(corpus_),
                      *collective);
    if (collective->rank() != 0) return 0;  // rank 0 wrote and reports
    std::cout << nlohmann::json({{"output", output_},
                                 {"passages", rows},
                                 {"dim", model.model->dim()},
                                 {"workers", collective->world_size()},
                                 {"seconds", watch.seconds()}})
                     .dump()
              << std::endl;
    return 0;
  }

 private:
  std::string model_dir_, corpus_, output_, device_ = "auto";
  int64_t batch_size_ = 256, passage_max_length_ = 0, nproc_ = 1;
  bool skip_bad_records_ = false;
};

class SearchCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("search",
                                 "print the best passages for each query (from the arguments, or one per "
                                 "line on standard input)");
    app_->add_option("--model", model_dir_, "a model directory written by `contaccum train`")
        ->required()
        ->check(CLI::ExistingDirectory);
    app_->add_option("--corpus", corpus_, "BEIR corpus.jsonl")->required()->check(CLI::ExistingFile);
    add_device_option(app_, device_);
    vectors_.add_to(app_, "encoding the corpus first");
    app_->add_option("--k", k_, "results per query")->check(cli::positive());
    auto* hybrid = app_->add_flag("--hybrid-bm25", hybrid_, "fuse the dense ranking with BM25's");
    app_->add_option("--fusion", fusion_, "rrf or linear")->check(CLI::IsMember({"rrf", "linear"}))->needs(hybrid);
    app_->add_option("--weight", weight_, "weight of the dense ranking in [0, 1]")
        ->check(cli::number_in(0.0, 1.0))
        ->needs(hybrid);
    app_->add_flag("--skip-bad-records", skip_bad_records_, "skip (and count) malformed records instead of stopping");
    app_->add_option("query", queries_, "query text (none: read queries from standard input)");
  }

  int run() override {
    const auto corpus = read_corpus(corpus_, skip_bad_records_);
    auto model = load_model_on(model_dir_, device_);
    const auto tokenize = model.text_encoder();
    vectors_.check();
    const auto dense_search = dense_searcher(model, corpus);
    std::unique_ptr<BM25Index> bm25;
    if (hybrid_) bm25 = std::make_unique<BM25Index>(corpus, BM25Options().progress(true));
    auto answer = [&](const std::string& query) {
      const auto q =
          encode_texts(model.model, Tower::Query, {query}, tokenize, model.config.lengths.query_max_length(), 1);
      auto ranking = dense_search(q, hybrid_ ? std::max<int64_t>(k_, 100) : k_);
      if (bm25) {
        ranking = fuse_rankings(ranking, bm25->search({query}, std::max<int64_t>(k_, 100)),
                                FusionOptions().method(fusion_method(fusion_)).weight(weight_).k(k_));
      }
      std::cout << "query: " << query << "\n";
      const auto scores = ranking.scores.to(torch::kDouble);
      for (int64_t j = 0; j < std::min<int64_t>(k_, ranking.indices.size(1)); ++j) {
        const int64_t row = ranking.indices[0][j].item<int64_t>();
        if (row < 0) break;
        auto text = corpus.full_text(row);
        for (auto& c : text) {
          if (c == '\n' || c == '\t') c = ' ';
        }
        if (text.size() > 80) text = text.substr(0, 77) + "...";
        std::ostringstream line;
        line << std::setw(3) << j + 1 << "  " << corpus.id(row) << "  " << std::fixed << std::setprecision(4)
             << scores[0][j].item<double>() << "  " << text;
        std::cout << line.str() << "\n";
      }
      std::cout << std::endl;
    };
    // A query that cannot be searched (invalid UTF-8, say) is named by its
    // place; the others are still answered, and the status says one failed.
    int status = 0;
    const auto answer_or_report = [&](const std::string& query, const std::string& where) {
      try {
        answer(query);
      } catch (const c10::Error& e) {
        std::cout << std::flush;
        std::cerr << "contaccum: error: " << where << ": " << e.what_without_backtrace() << std::endl;
        status = 1;
      }
    };
    if (!queries_.empty()) {
      for (size_t i = 0; i < queries_.size(); ++i) answer_or_report(queries_[i], "query " + std::to_string(i + 1));
    } else {
      int64_t number = 0;
      for (std::string line; std::getline(std::cin, line);) {
        ++number;
        if (!line.empty()) answer_or_report(line, "standard input line " + std::to_string(number));
      }
    }
    return status;
  }

 private:
  using DenseSearch = std::function<SearchResult(const torch::Tensor& query, int64_t k)>;

  // Through the index, or exactly over the corpus's embeddings held for every
  // query (read from --embeddings, or encoded first).
  DenseSearch dense_searcher(TrainedModel& model, const TextTable& corpus) const {
    if (vectors_.has_index()) {
      auto index = std::make_shared<VectorIndex>(vectors_.open_index(TablePassages(corpus), &model.model));
      return [index](const torch::Tensor& q, int64_t k) { return index->search(q, k); };
    }
    torch::Tensor passages;
    if (vectors_.has_embeddings()) {
      passages = vectors_.open_embeddings(TablePassages(corpus), &model.model).read_all();
    } else {
      std::vector<std::string> texts;
      for (int64_t row = 0; row < corpus.size(); ++row) texts.push_back(corpus.full_text(row));
      passages = encode_texts(model.model, Tower::Passage, texts, model.text_encoder(),
                              model.config.lengths.passage_max_length(), 256);
    }
    return [passages](const torch::Tensor& q, int64_t k) { return exact_search(q, passages, SearchOptions().k(k)); };
  }

  std::string model_dir_, corpus_, fusion_ = "rrf", device_ = "auto";
  PassageVectorsArgs vectors_;
  std::vector<std::string> queries_;
  int64_t k_ = 10;
  bool hybrid_ = false, skip_bad_records_ = false;
  double weight_ = 0.5;
};

}  // namespace

std::unique_ptr<Command> encode_command() { return std::make_unique<EncodeCommand>(); }
std::unique_ptr<Command> search_command() { return std::make_unique<SearchCommand>(); }

}  // namespace contaccum::cli
