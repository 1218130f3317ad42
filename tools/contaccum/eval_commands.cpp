// contaccum eval --model DIR --corpus ... --queries ... --qrels ... [--run FILE] [--embeddings EMB |
//                --index DIR [--nprobe N] [--ef-search N]]
//                [--hybrid-bm25 [--fusion rrf|linear] [--weight W | --tune-on QRELS] [--k1 --b]]
// contaccum bm25 --corpus ... --queries ... --qrels ... [--run FILE] [--k1 --b]
#include "cli_checks.h"
#include "command.h"
#include "data_args.h"
#include "passage_vectors.h"

#include <contaccum/contaccum.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <iostream>
#include <set>

namespace contaccum::cli {
namespace {

class EvalCommand : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("eval", "evaluate a trained model (exact search) on BEIR-layout data");
    app_->add_option("--model", model_dir_, "a model directory written by `contaccum train` (DIR/model or DIR/best)")
        ->required()
        ->check(CLI::ExistingDirectory);
    add_data_args(app_, data_);
    add_device_option(app_, device_);
    app_->add_option("--batch-size", batch_size_, "texts encoded at once")->check(cli::positive());
    app_->add_option("--query-max-length", query_max_length_, "token limit of queries (default: the model's)")
        ->check(cli::token_limit());
    app_->add_option("--passage-max-length", passage_max_length_, "token limit of passages (default: the model's)")
        ->check(cli::token_limit());
    vectors_.add_to(app_, "encoding the corpus");
    auto* hybrid = app_->add_flag("--hybrid-bm25", hybrid_, "fuse the dense ranking with BM25's");
    app_->add_option("--fusion", fusion_, "rrf or linear (min-max normalised scores)")
        ->check(CLI::IsMember({"rrf", "linear"}))
        ->needs(hybrid);
    app_->add_option("--weight", weight_, "weight of the dense ranking in [0, 1] (BM25 gets 1 - weight)")
        ->check(cli::number_in(0.0, 1.0));
    app_->add_option("--tune-on", tune_on_, "choose the weight on these qrels (another split than --qrels)")
        ->check(CLI::ExistingFile);
    // Options that would be ignored without --hybrid-bm25 are refused.
    app_->add_option("--k1", k1_, "BM25 k1 (with --hybrid-bm25)")->check(cli::non_negative())->needs(hybrid);
    app_->add_option("--b", b_, "BM25 b (with --hybrid-bm25)")->check(cli::number_in(0.0, 1.0))->needs(hybrid);
  }

  int run() override {
    const Stopwatch watch;
    TORCH_CHECK(hybrid_ || (tune_on_.empty() && weight_ < 0), "--weight and --tune-on need --hybrid-bm25");
    TORCH_CHECK(tune_on_.empty() || weight_ < 0, "give --weight or --tune-on, not both");
    vectors_.check();
    if (!hybrid_) {
      // Dense alone: the corpus is read from its file a block at a time, so
      // memory stays flat in the corpus size.
      const auto data = load_streamed_data(data_);
      auto model = load_model_on(model_dir_, device_);
      const auto result = evaluate(model, data.corpus, data.queries, data.qrels);
      if (!data_.run.empty()) {
        write_trec_run(data_.run, result.ranking, result.query_rows, data.queries, data.corpus, "contaccum");
      }
      print_metrics(result, watch.seconds());
      return 0;
    }
    // BM25 needs every passage's text for its index: the corpus is held.
    auto data = load_data(data_);
    auto model = load_model_on(model_dir_, device_);
    std::vector<Qrel> tune_qrels;
    if (!tune_on_.empty()) tune_qrels = read_tune_qrels(data);
    // One dense search (and one BM25 search) for the reported and the tuning
    // queries together.
    std::vector<Qrel> all_qrels = data.qrels;
    all_qrels.insert(all_qrels.end(), tune_qrels.begin(), tune_qrels.end());
    const auto dense = evaluate(model, TablePassages(data.corpus), data.queries, all_qrels);
    BM25Index index(data.corpus, BM25Options().k1(k1_).b(b_).progress(true));
    const auto bm25 = evaluate_bm25(index, data.queries, all_qrels, MetricsOptions(), data_.k, true);
    const auto fusion = FusionOptions().method(fusion_method(fusion_)).k(data_.k).weight(weight_ >= 0 ? weight_ : 0.5);
    const auto hybrid = evaluate_hybrid(dense, bm25, data.qrels, tune_qrels, fusion);
    if (!data_.run.empty()) {
      write_trec_run(data_.run, hybrid.fused.ranking, hybrid.fused.query_rows, data.queries, data.corpus,
                     "contaccum-hybrid");
    }
    auto j = nlohmann::json::parse(hybrid.fused.metrics.to_json());
    j["fusion"] = fusion_;
    j["weight"] = hybrid.weight;
    j["tuned_on"] = tune_on_.empty() ? nlohmann::json(nullptr) : nlohmann::json(tune_on_);
    j["dense"] = nlohmann::json::parse(hybrid.dense.to_json());
    j["bm25"] = nlohmann::json::parse(hybrid.bm25.to_json());
    j["seconds"] = watch.seconds();
    std::cout << j.dump() << std::endl;
    return 0;
  }

 private:
  // The dense ranking of the judged queries of `qrels`: by exact search over
  // the corpus (encoded as it is read), over --embeddings, or through --index.
  EvalResult evaluate(TrainedModel& model, const PassageSource& corpus, const TextTable& queries,
                      const std::vector<Qrel>& qrels) const {
    DenseEvalOptions options;
    options.batch_size(batch_size_)
        .query_max_length(query_max_length_ > 0 ? query_max_length_ : model.config.lengths.query_max_length())
        .passage_max_length(passage_max_length_ > 0 ? passage_max_length_ : model.config.lengths.passage_max_length())
        .search(SearchOptions().k(data_.k))
        .progress(true);
    if (vectors_.has_embeddings()) {
      auto reader = vectors_.open_embeddings(corpus);
      return evaluate_dense(model.model, model.text_encoder(), reader, queries, qrels, options);
    }
    if (vectors_.has_index()) {
      const auto index = vectors_.open_index(corpus);
      return evaluate_dense(model.model, model.text_encoder(), index, queries, qrels, options);
    }
    return evaluate_dense(model.model, model.text_encoder(), corpus, queries, qrels, options);
  }

  // The tuning split: never the reported one, and sharing no query with it.
  std::vector<Qrel> read_tune_qrels(const LoadedData& data) const {
    TORCH_CHECK(fs_equivalent(tune_on_, data_.qrels) == false, "--tune-on ", tune_on_,
                " is the split being reported (--qrels); tune on another split");
    const auto reader = ReaderOptions().on_bad_record(data_.skip_bad_records ? OnBadRecord::Skip : OnBadRecord::Error);
    ReadReport report;
    auto qrels = read_qrels(tune_on_, data.queries, data.corpus, reader, &report);
    require_judged_queries(qrels, report, "--tune-on " + tune_on_, data_.queries);
    const auto tune_rows = judged_queries(qrels), report_rows = judged_queries(data.qrels);
    std::vector<int64_t> shared;
    std::set_intersection(tune_rows.begin(), tune_rows.end(), report_rows.begin(), report_rows.end(),
                          std::back_inserter(shared));
    TORCH_CHECK(shared.empty(), "--tune-on ", tune_on_, " and --qrels ", data_.qrels, " share ", shared.size(),
                " judged queries (e.g. '", shared.empty() ? "" : std::string(data.queries.id(shared[0])),
                "'); tune on queries that are not reported");
    return qrels;
  }

  static bool fs_equivalent(const std::string& a, const std::string& b) {
    std::error_code error;
    return std::filesystem::equivalent(a, b, error);
  }

  DataArgs data_;
  std::string model_dir_, fusion_ = "rrf", tune_on_, device_ = "auto";
  PassageVectorsArgs vectors_;
  int64_t batch_size_ = 256, query_max_length_ = 0, passage_max_length_ = 0;
  bool hybrid_ = false;
  double weight_ = -1.0, k1_ = 0.9, b_ = 0.4;
};

class Bm25Command : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("bm25", "BM25 baseline on BEIR-layout data");
    add_data_args(app_, data_);
    app_->add_option("--k1", k1_, "BM25 k1")->check(cli::non_negative());
    app_->add_option("--b", b_, "BM25 b")->check(cli::number_in(0.0, 1.0));
  }

  int run() override {
    const Stopwatch watch;
    auto data = load_data(data_);
    BM25Index index(data.corpus, BM25Options().k1(k1_).b(b_).progress(true));
    auto result = evaluate_bm25(index, data.queries, data.qrels, MetricsOptions(), data_.k, true);
    if (!data_.run.empty()) {
      write_trec_run(data_.run, result.ranking, result.query_rows, data.queries, data.corpus, "bm25");
    }
    print_metrics(result, watch.seconds());
    return 0;
  }

 private:
  DataArgs data_;
  double k1_ = 0.9, b_ = 0.4;
};

}  // namespace

std::unique_ptr<Command> eval_command() { return std::make_unique<EvalCommand>(); }
std::unique_ptr<Command> bm25_command() { return std::make_unique<Bm25Command>(); }

}  // namespace contaccum::cli
