// Built against an installed contaccum: one ContAccum step must run.
#include <contaccum/contaccum.h>

#include <torch/torch.h>

#include <cstring>

int main() {
  using namespace contaccum;
  if (std::strcmp(CONTACCUM_VERSION_STRING, CONTACCUM_PACKAGE_VERSION) != 0) return 2;
  DualEncoder model(BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(50, 8)).ptr());
  Strategy strategy(model, StrategyOptions::contaccum(4, 2, 8));
  TrainingBatch batch;
  batch.queries.input_ids = torch::randint(1, 50, {4, 5}, torch::kLong);
  batch.passages.input_ids = torch::randint(1, 50, {4, 7}, torch::kLong);
  const auto stats = strategy.compute_gradients(batch);
  return std::isfinite(stats.loss) && stats.query_bank_size == 4 ? 0 : 1;
}
