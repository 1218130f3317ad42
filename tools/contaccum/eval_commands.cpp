// contaccum eval --model DIR --corpus ... --queries ... --qrels ... [--run FILE]
// contaccum bm25 --corpus ... --queries ... --qrels ... [--run FILE] [--k1 --b]
#include "command.h"
#include "data_args.h"

#include <contaccum/contaccum.h>

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
    app_->add_option("--batch-size", batch_size_, "texts encoded at once")->check(CLI::PositiveNumber);
    app_->add_option("--query-max-length", query_max_length_, "token limit of queries (default: the model's)")
        ->check(CLI::NonNegativeNumber);
    app_->add_option("--passage-max-length", passage_max_length_, "token limit of passages (default: the model's)")
        ->check(CLI::NonNegativeNumber);
  }

  int run() override {
    const Stopwatch watch;
    auto data = load_data(data_);
    auto model = load_model(model_dir_);
    DenseEvalOptions options;
    options.batch_size(batch_size_)
        .query_max_length(query_max_length_ > 0 ? query_max_length_ : model.config.query_max_length)
        .passage_max_length(passage_max_length_ > 0 ? passage_max_length_ : model.config.passage_max_length)
        .search(SearchOptions().k(data_.k));
    auto result = evaluate_dense(model.model, model.text_encoder(), data.corpus, data.queries, data.qrels, options);
    print_result(result, data, data_, "contaccum", watch.seconds());
    return 0;
  }

 private:
  DataArgs data_;
  std::string model_dir_;
  int64_t batch_size_ = 256, query_max_length_ = 0, passage_max_length_ = 0;
};

class Bm25Command : public Command {
 public:
  void add(CLI::App& parent) override {
    app_ = parent.add_subcommand("bm25", "BM25 baseline on BEIR-layout data");
    add_data_args(app_, data_);
    app_->add_option("--k1", k1_, "BM25 k1")->check(CLI::NonNegativeNumber);
    app_->add_option("--b", b_, "BM25 b")->check(CLI::Range(0.0, 1.0));
  }

  int run() override {
    const Stopwatch watch;
    auto data = load_data(data_);
    BM25Index index(data.corpus, BM25Options().k1(k1_).b(b_));
    auto result = evaluate_bm25(index, data.queries, data.qrels, MetricsOptions(), data_.k);
    print_result(result, data, data_, "bm25", watch.seconds());
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
