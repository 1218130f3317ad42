// Dense and BM25 evaluation end to end with models and corpora whose rankings
// are known, encode_texts' batching and mode handling, and bad input.
#include "test_util.h"

#include <map>
#include <sstream>

namespace contaccum {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

// Words -> ids: 1 + position in `words`, 0 for unknown words and padding.
TextEncoderFn word_tokenizer(std::vector<std::string> words) {
  return [words](const std::vector<std::string>& texts, int64_t max_length) {
    std::vector<std::vector<int64_t>> rows;
    int64_t len = 1;
    for (const auto& t : texts) {
      std::istringstream in(t);
      std::vector<int64_t> ids;
      for (std::string w; in >> w && static_cast<int64_t>(ids.size()) < max_length;) {
        const auto it = std::find(words.begin(), words.end(), w);
        ids.push_back(it == words.end() ? 0 : 1 + (it - words.begin()));
      }
      len = std::max<int64_t>(len, static_cast<int64_t>(ids.size()));
      rows.push_back(ids);
    }
    EncoderInput in;
    in.input_ids = torch::zeros({static_cast<int64_t>(texts.size()), len}, torch::kLong);
    in.attention_mask = torch::zeros_like(in.input_ids);
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t j = 0; j < rows[r].size(); ++j) {
        in.input_ids[r][j] = rows[r][j];
        in.attention_mask[r][j] = 1;
      }
    }
    return in;
  };
}

// Bag of words: counts of each known word (id 0 ignored), times a parameter
// of ones; in training mode heavy dropout, so that results are only right
// when encode_texts evaluates in eval mode.
class CountEncoder : public EncoderModule {
 public:
  explicit CountEncoder(int64_t words) : words_(words) { scale_ = register_parameter("scale", torch::ones({words})); }
  torch::Tensor forward(const EncoderInput& in) override {
    ++calls;
    const auto one_hot = torch::one_hot(in.input_ids, words_ + 1).slice(2, 1).to(torch::kFloat);
    const auto counts = (one_hot * in.attention_mask.unsqueeze(2).to(torch::kFloat)).sum(1);
    return torch::dropout(counts * scale_, 0.9, is_training());
  }
  int64_t output_dim() const override { return words_; }
  int64_t calls = 0;

 private:
  int64_t words_;
  torch::Tensor scale_;
};

struct Fixture {
  std::vector<std::string> words = {"alpha", "beta", "gamma", "delta"};
  std::shared_ptr<CountEncoder> encoder = std::make_shared<CountEncoder>(4);
  DualEncoder model{encoder};
  TextTable corpus, queries;
  std::vector<Qrel> qrels;
  Fixture() {
    corpus.add("d0", "", "alpha");
    corpus.add("d1", "beta", "beta");  // title and text both count: beta x2
    corpus.add("d2", "", "gamma");
    corpus.add("d3", "", "alpha beta");
    corpus.add("d4", "", "delta");
    queries.add("q0", "", "alpha");    // d0 and d3 tie at 1: d0 (lower row) first
    queries.add("q1", "", "beta");     // d1 scores 2, d3 1: the relevant d3 is second
    queries.add("q2", "", "gamma");    // d2 first
    queries.add("q3", "", "epsilon");  // unknown: every passage 0, rows in order, d4 fifth
    queries.add("q4", "", "delta");    // no judgement: not evaluated
    queries.add("q5", "", "gamma");    // only a score-0 judgement: not evaluated
    qrels = {{3, 4, 1}, {0, 0, 1}, {1, 3, 1}, {2, 2, 1}, {5, 2, 0}};
  }
};

TEST(Eval, DenseRanksAndScoresAKnownModel) {
  Fixture f;
  f.model->train();
  const auto result = evaluate_dense(f.model, word_tokenizer(f.words), f.corpus, f.queries, f.qrels,
                                     DenseEvalOptions().batch_size(2).search(SearchOptions().k(100).corpus_block(2)));
  EXPECT_TRUE(f.model->is_training()) << "the previous mode must be restored";
  EXPECT_EQ(result.query_rows, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(torch::equal(result.ranking.indices,
                           torch::tensor({0, 3, 1, 2, 4, 1, 3, 0, 2, 4, 2, 0, 1, 3, 4, 0, 1, 2, 3, 4}).view({4, 5})));
  EXPECT_TRUE(torch::equal(result.ranking.scores[1], torch::tensor({2.f, 1.f, 0.f, 0.f, 0.f})));
  // Relevant passages at ranks 1, 2, 1, 5.
  const auto& m = result.metrics;
  EXPECT_EQ(m.queries, 4);
  EXPECT_DOUBLE_EQ(m.at("top@1"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("top@5"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("recall@20"), 1.0);
  EXPECT_DOUBLE_EQ(m.at("mrr@10"), (1 + 0.5 + 1 + 0.2) / 4);
  EXPECT_DOUBLE_EQ(m.at("ndcg@10"), (1 + 1 / std::log2(3.0) + 1 + 1 / std::log2(6.0)) / 4);
  EXPECT_DOUBLE_EQ(m.at("map@100"), (1 + 0.5 + 1 + 0.2) / 4);
  // Passages in batches of 2 (3 calls), queries in batches of 2 (2 calls).
  EXPECT_EQ(f.encoder->calls, 5);

  f.model->eval();
  evaluate_dense(f.model, word_tokenizer(f.words), f.corpus, f.queries, f.qrels,
                 DenseEvalOptions().metrics(MetricsOptions().top_k({1})));
  EXPECT_FALSE(f.model->is_training());
}

TEST(Eval, EncodeTextsBatchesWithoutAutogradInEvalMode) {
  torch::manual_seed(3);
  auto model = test::make_model(/*dropout=*/0.5, /*shared=*/false);
  auto tokenize = [](const std::vector<std::string>& texts, int64_t max_length) {
    // Each character one token id (1..96), truncated to max_length.
    const auto n = static_cast<int64_t>(texts.size());
    EncoderInput in;
    in.input_ids = torch::zeros({n, max_length}, torch::kLong);
    in.attention_mask = torch::zeros({n, max_length}, torch::kLong);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < max_length && j < static_cast<int64_t>(texts[r].size()); ++j) {
        in.input_ids[r][j] = 1 + static_cast<unsigned char>(texts[r][j]) % 96;
        in.attention_mask[r][j] = 1;
      }
    }
    return in;
  };
  const std::vector<std::string> texts = {"first text",      "second", "a third one", "4",
                                          "fifth text here", "six",    "seven"};
  model->train();
  const auto got = encode_texts(model, Tower::Passage, texts, tokenize, 8, 3);
  const auto got_q = encode_texts(model, Tower::Query, texts, tokenize, 8, 100);
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(got.scalar_type(), torch::kFloat);
  EXPECT_EQ(got.sizes(), (std::vector<int64_t>{7, 16}));
  EXPECT_FALSE(got.requires_grad());
  model->eval();
  const auto want = model->encode_passages(tokenize(texts, 8)).to(torch::kFloat);
  const auto want_q = model->encode_queries(tokenize(texts, 8)).to(torch::kFloat);
  EXPECT_TRUE(torch::allclose(got, want, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(got_q, want_q, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(got, got_q, 1e-3, 1e-3)) << "the two towers differ";
  EXPECT_EQ(encode_texts(model, Tower::Query, {}, tokenize, 8, 3).sizes(), (std::vector<int64_t>{0, 16}));

  EXPECT_THAT([&] { encode_texts(model, Tower::Query, texts, tokenize, 8, 0); },
              ThrowsMessage<c10::Error>(HasSubstr("encode_texts: batch_size must be > 0, got 0")));
  EXPECT_THAT([&] { encode_texts(model, Tower::Query, texts, tokenize, -1, 4); },
              ThrowsMessage<c10::Error>(HasSubstr("encode_texts: max_length must be > 0, got -1")));
  EXPECT_THAT([&] { encode_texts(model, Tower::Query, texts, nullptr, 8, 4); },
              ThrowsMessage<c10::Error>(HasSubstr("encode_texts: tokenize must be set")));
  // The mode comes back also when encoding fails.
  model->train();
  const TextEncoderFn broken = [](const std::vector<std::string>&, int64_t) -> EncoderInput {
    TORCH_CHECK(false, "tokenizer exploded");
    return {};
  };
  EXPECT_THROW(encode_texts(model, Tower::Query, texts, broken, 8, 4), c10::Error);
  EXPECT_TRUE(model->is_training());
}

TEST(Eval, Bm25RanksAndScoresAKnownCorpus) {
  Fixture f;
  const BM25Index index(f.corpus);
  const auto result = evaluate_bm25(index, f.queries, f.qrels, MetricsOptions().top_k({1, 2}).recall_k({}), 3);
  EXPECT_EQ(result.query_rows, (std::vector<int64_t>{0, 1, 2, 3}));
  // q0 "alpha": d0 (length 1) beats d3 (length 2); q1 "beta": d1 (tf 2)
  // beats d3; q3 matches nothing: rows 0, 1, 2 at score 0.
  EXPECT_TRUE(torch::equal(result.ranking.indices, torch::tensor({0, 3, 1, 1, 3, 0, 2, 0, 1, 0, 1, 2}).view({4, 3})));
  EXPECT_EQ(result.ranking.scores[3].abs().sum().item<double>(), 0.0);
  const auto& m = result.metrics;
  EXPECT_EQ(m.queries, 4);
  EXPECT_DOUBLE_EQ(m.at("top@1"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("top@2"), 0.75);
  EXPECT_DOUBLE_EQ(m.at("mrr@10"), (1 + 0.5 + 1 + 0) / 4);
}

TEST(Eval, BadInputNamesTheProblem) {
  Fixture f;
  const auto tok = word_tokenizer(f.words);
  auto qrels = f.qrels;
  qrels.push_back({99, 0, 1});
  EXPECT_THAT([&] { evaluate_dense(f.model, tok, f.corpus, f.queries, qrels); },
              ThrowsMessage<c10::Error>(
                  HasSubstr("evaluate_dense: qrels[5] has query row 99, out of range for a queries table of 6 rows")));
  qrels.back() = {0, 5, 1};
  EXPECT_THAT([&] { evaluate_dense(f.model, tok, f.corpus, f.queries, qrels); },
              ThrowsMessage<c10::Error>(HasSubstr("qrels[5] has passage row 5, out of range for a corpus of 5 rows")));
  const BM25Index index(f.corpus);
  EXPECT_THAT([&] { evaluate_bm25(index, f.queries, qrels); },
              ThrowsMessage<c10::Error>(
                  HasSubstr("evaluate_bm25: qrels[5] has passage row 5, out of range for a corpus of 5 rows")));
  EXPECT_THAT([&] { evaluate_bm25(index, f.queries, f.qrels, {}, 0); },
              ThrowsMessage<c10::Error>(HasSubstr("evaluate_bm25: k must be > 0, got 0")));
  EXPECT_THAT(
      [&] {
        evaluate_dense(f.model, tok, f.corpus, f.queries, f.qrels, DenseEvalOptions().search(SearchOptions().k(0)));
      },
      ThrowsMessage<c10::Error>(HasSubstr("SearchOptions::k must be > 0, got 0")));
  EXPECT_THAT([&] { evaluate_dense(f.model, tok, f.corpus, f.queries, f.qrels, DenseEvalOptions().batch_size(0)); },
              ThrowsMessage<c10::Error>(HasSubstr("DenseEvalOptions::batch_size must be > 0, got 0")));
  EXPECT_THAT(
      [&] {
        evaluate_dense(f.model, tok, f.corpus, f.queries, {{5, 2, 0}});
      },
      ThrowsMessage<c10::Error>(HasSubstr("evaluate_dense: no query has a relevant passage")));
}

}  // namespace
}  // namespace contaccum
