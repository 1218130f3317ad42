// Quickstart: train a dual encoder with ContAccum on synthetic retrieval data.
//
// Each synthetic "document" is a bag of 16 tokens out of 500; its query is 6
// of those tokens plus 2 random ones. A hard negative shares half of the positive's
// tokens. The model must learn which tokens identify a document.
#include <contaccum/contaccum.h>

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

using namespace contaccum;

namespace {

constexpr int64_t kVocab = 500, kDocLen = 16, kQueryLen = 8;

// Rows of `docs` [n, kDocLen] -> queries [n, kQueryLen].
torch::Tensor make_queries(const torch::Tensor& docs) {
  const int64_t n = docs.size(0);
  auto pick = torch::rand({n, kDocLen}).argsort(/*dim=*/1, /*descending=*/false).slice(1, 0, kQueryLen - 2);
  auto kept = docs.gather(1, pick);
  auto noise = torch::randint(1, kVocab, {n, 2}, torch::kLong);
  return torch::cat({kept, noise}, /*dim=*/1);
}

// A batch of `n` examples with one hard negative each.
TrainingBatch make_batch(int64_t n) {
  auto docs = torch::randint(1, kVocab, {n, kDocLen}, torch::kLong);
  auto hard = torch::cat({docs.slice(1, 0, kDocLen / 2), torch::randint(1, kVocab, {n, kDocLen / 2}, torch::kLong)}, 1);
  TrainingBatch batch;
  batch.hard_negatives = 1;
  batch.queries.input_ids = make_queries(docs);
  batch.queries.attention_mask = torch::ones_like(batch.queries.input_ids);
  // Example-major: positive, then its hard negative.
  batch.passages.input_ids = torch::stack({docs, hard}, 1).view({2 * n, kDocLen});
  batch.passages.attention_mask = torch::ones_like(batch.passages.input_ids);
  return batch;
}

// Top-1 accuracy of each query against all `n` held-out documents.
double top1(DualEncoder& model, int64_t n) {
  torch::NoGradGuard no_grad;
  model->eval();
  auto docs = torch::randint(1, kVocab, {n, kDocLen}, torch::kLong);
  EncoderInput q{make_queries(docs), {}, {}}, p{docs, {}, {}};
  // The model normalises its representations (cosine), as evaluation reads them.
  auto scores = model->encode_queries(q).matmul(model->encode_passages(p).t());
  model->train();
  return scores.argmax(1).eq(torch::arange(n)).to(torch::kDouble).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  contaccum::configure_allocator();  // first: freed memory is reused, not faulted in again
  const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 300;
  torch::manual_seed(0);

  auto make_tower = [] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(kVocab, 128).embedding_dim(128).dropout(0.1));
  };
  // Cosine similarity, set once on the model: its representations have unit
  // norm, and the loss, evaluation, embeddings and indexes all read it from
  // there. Cosine with a low temperature trains faster than raw dot products
  // on this small model.
  DualEncoder model(make_tower().ptr(), make_tower().ptr(), DualEncoderOptions().similarity(Similarity::Cosine));

  // ContAccum: 64 examples per step in 8 micro-batches of 8, with banks of
  // 256 examples whose representations act as extra negatives.
  auto options = StrategyOptions::contaccum(/*total_batch=*/64, /*micro_batch=*/8, /*memory_size=*/256)
                     .loss(InfoNCEOptions().temperature(0.05));
  Strategy strategy(model, options);
  // torch::optim::AdamW's numbers in one pass without temporaries.
  FusedAdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.01));

  // The trainer's step: gradients, norms, the non-finite check, clipping at
  // 2.0, the optimizer.
  TrainingStep training_step(model, strategy, optimizer, local_collective(), TrainingStepOptions().max_grad_norm(2.0));

  std::printf("top@1 before training: %.3f\n", top1(model, 1000));
  for (int64_t step = 1; step <= steps; ++step) {
    const TrainingStepResult r = training_step.run(make_batch(options.total_batch()), step);
    if (step % 25 == 0 || step == 1) {
      std::printf("step %4lld  loss %.4f  negatives/query %.0f  bank fill %.2f  |gq|/|gp| %.3f\n",
                  static_cast<long long>(step), r.stats.loss, r.stats.negatives_per_query, r.stats.passage_bank_fill,
                  r.grad_norms.ratio);
    }
  }
  std::printf("top@1 after training:  %.3f (1000 candidates)\n", top1(model, 1000));
  return 0;
}
