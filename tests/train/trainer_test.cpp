#include <contaccum/contaccum.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "train/train_fixture.h"

#include <cmath>
#include <fstream>
#include <thread>

namespace contaccum {
namespace {

constexpr int64_t kVocab = test::kTinyVocab;
DualEncoder tiny_model(uint64_t seed) { return test::tiny_dual_encoder(seed); }
TrainerOptions tiny_options(const std::string& dir) { return test::tiny_trainer_options(dir); }

using test::read_jsonl;

struct StopAt : TrainerCallback {
  int64_t at;
  explicit StopAt(int64_t s) : at(s) {}
  void on_step_end(TrainerState& state, const StepRecord&) override {
    if (state.step == at) state.should_stop = true;
  }
};

struct ResumeCase {
  const char* name;
  StrategyOptions strategy;
  int64_t stop_at;  // the checkpoint the resumed run starts from
  friend void PrintTo(const ResumeCase& c, std::ostream* os) { *os << c.name << "_stop" << c.stop_at; }
};

// 2N steps straight == N steps, a new process-like start (fresh model,
// optimizer, strategy, loader) from the checkpoint, N more: weights, banks
// (in storage order), the bank score cache and every logged loss, bit for
// bit. Banks of 20 with 16 rows a step are partially filled after step 1,
// full and rotated (head 12) after step 2, and rotated again (head 8) after
// step 3.
class TrainerResume : public ::testing::TestWithParam<ResumeCase> {};

TEST_P(TrainerResume, IsBitIdenticalToAStraightRun) {
  const auto& c = GetParam();
  auto set = test::tiny_training_set(48);
  Collator collator(test::hashing_tokenizer(kVocab), CollatorOptions().query_max_length(6).passage_max_length(14));

  test::TempDir straight_dir, resumed_dir;
  auto straight_model = tiny_model(1);
  Trainer straight(straight_model, c.strategy, set, collator, tiny_options(straight_dir.path.string()));
  straight.train();

  {
    auto first_model = tiny_model(1);
    Trainer first(first_model, c.strategy, set, collator, tiny_options(resumed_dir.path.string()));
    first.add_callback(std::make_shared<StopAt>(c.stop_at));  // stops (and checkpoints) mid-epoch
    auto r = first.train();
    EXPECT_TRUE(r.stopped_early);
    EXPECT_EQ(first.state().step, c.stop_at);
  }
  // Different initial weights and generator state: everything must come from
  // the checkpoint.
  auto resumed_model = tiny_model(99);
  torch::manual_seed(12345);
  Trainer resumed(resumed_model, c.strategy, set, collator, tiny_options(resumed_dir.path.string()));
  ASSERT_TRUE(resumed.resume_latest());
  EXPECT_EQ(resumed.state().step, c.stop_at);
  resumed.train();
  EXPECT_EQ(resumed.state().step, 8);

  const auto a = straight_model->named_parameters(), b = resumed_model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
  const auto& sa = straight.strategy();
  const auto& sb = resumed.strategy();
  for (const auto* bank : {"query", "passage"}) {
    const auto& ba = std::string(bank) == "query" ? sa.query_bank() : sa.passage_bank();
    const auto& bb = std::string(bank) == "query" ? sb.query_bank() : sb.passage_bank();
    ASSERT_EQ(ba.size(), bb.size()) << bank;
    EXPECT_EQ(ba.head(), bb.head()) << bank;
    if (ba.size() > 0) {
      EXPECT_TRUE(torch::equal(ba.view(), bb.view())) << bank << " bank";
    }
    EXPECT_EQ(ba.tags(), bb.tags()) << bank << " bank's tags (the rows' ages)";
  }
  EXPECT_EQ(sa.steps(), sb.steps());
  ASSERT_EQ(sa.momentum_encoder() != nullptr, sb.momentum_encoder() != nullptr);
  if (sa.momentum_encoder() != nullptr) {
    const auto &wa = sa.momentum_encoder()->weights(), &wb = sb.momentum_encoder()->weights();
    ASSERT_EQ(wa.size(), wb.size());
    for (size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(torch::equal(wa[i], wb[i])) << "moving average " << i;
  }
  if (c.strategy.staleness_sample() > 0) {
    // The kept inputs came through the checkpoint: the same measurement.
    const auto ma = straight.strategy().measure_staleness(), mb = resumed.strategy().measure_staleness();
    EXPECT_EQ(ma.examples, 7);
    EXPECT_EQ(mb.examples, ma.examples);
    EXPECT_EQ(mb.query.all.mean_cosine, ma.query.all.mean_cosine);
    EXPECT_EQ(mb.passage.all.min_cosine, ma.passage.all.min_cosine);
    EXPECT_EQ(mb.rank_changed, ma.rank_changed);
  }
  ASSERT_EQ(sa.bank_scores().size(), sb.bank_scores().size());
  if (sa.bank_scores().size() > 0) {
    EXPECT_TRUE(torch::equal(sa.bank_scores().row_logsumexp(), sb.bank_scores().row_logsumexp()));
  }

  // metrics.jsonl of the resumed run: steps 1..8 once each, same losses.
  const auto la = read_jsonl(straight_dir / "metrics.jsonl"), lb = read_jsonl(resumed_dir / "metrics.jsonl");
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(lb[i]["step"].get<int64_t>(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(la[i]["loss"].get<double>(), lb[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(la[i]["grad_norm"], lb[i]["grad_norm"]) << "step " << i + 1;
  }
}

std::vector<ResumeCase> resume_cases() {
  const std::vector<std::pair<const char*, StrategyOptions>> strategies = {
      {"full_batch", StrategyOptions::full_batch(16)},
      {"grad_accum", StrategyOptions::grad_accum(16, 4)},
      {"grad_cache", StrategyOptions::grad_cache(16, 4)},
      {"contaccum", StrategyOptions::contaccum(16, 4, 20)},
      {"contaccum_grad_cache", StrategyOptions::contaccum_grad_cache(16, 4, 20)},
      {"no_query_bank", StrategyOptions::contaccum(16, 4, 20).query_bank(false)},
      {"no_passage_bank", StrategyOptions::contaccum(16, 4, 20).passage_bank(false)},
      {"no_banked_hard_negatives", StrategyOptions::contaccum(16, 4, 20).bank_hard_negatives(false)},
      {"banks_cleared", StrategyOptions::contaccum(16, 4, 20).clear_banks_after_step(true)},
      {"momentum_bank_encoder",
       StrategyOptions::contaccum(16, 4, 20).bank_encoder(BankEncoder::Momentum).momentum(0.9)},
      {"staleness_sample", StrategyOptions::contaccum(16, 4, 20).staleness_sample(7)},
  };
  std::vector<ResumeCase> out;
  for (const auto& [name, options] : strategies) {
    for (int64_t stop : {1, 2, 3}) out.push_back({name, options, stop});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryStrategyAndBankPosition, TrainerResume, ::testing::ValuesIn(resume_cases()),
                         [](const ::testing::TestParamInfo<ResumeCase>& info) {
                           return std::string(info.param.name) + "_stop" + std::to_string(info.param.stop_at);
                         });

TEST(Trainer, MetricsLinesCarryEveryField) {
  auto set = test::tiny_training_set(40);
  Collator collator(test::hashing_tokenizer(kVocab));
  test::TempDir dir;
  auto model = tiny_model(2);
  // 40 examples / 16 = 2 steps per epoch (the last partial batch dropped).
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 32), set, collator,
                  tiny_options(dir.path.string()).max_steps(0).epochs(2).max_grad_norm(0.5).checkpoint_every(0));
  EXPECT_EQ(trainer.steps_per_epoch(), 2);
  trainer.train();
  const auto lines = read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  LinearSchedule schedule(LinearScheduleOptions(1e-2, 4).warmup_steps(2));
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& j = lines[i];
    EXPECT_EQ(j["step"].get<int64_t>(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(j["epoch"].get<int64_t>(), static_cast<int64_t>(i) / 2);
    EXPECT_DOUBLE_EQ(j["lr"].get<double>(), schedule.lr(static_cast<int64_t>(i)));
    EXPECT_TRUE(std::isfinite(j["loss"].get<double>()));
    // Banks of 32 examples filling 16 per step; 3 in-batch micro-batch
    // columns (4 x 3 passages - 1) plus the bank's (m x 3) as negatives.
    EXPECT_DOUBLE_EQ(j["passage_bank_fill"].get<double>(), std::min(1.0, 0.5 * static_cast<double>(i + 1)));
    const double q = j["query_grad_norm"].get<double>(), p = j["passage_grad_norm"].get<double>();
    EXPECT_NEAR(j["grad_norm_ratio"].get<double>(), q / p, 1e-12);
    // float32 parameters: the clipping's norm is summed in float32.
    EXPECT_NEAR(j["grad_norm"].get<double>(), std::sqrt(q * q + p * p), 1e-5 * (q + p));
    EXPECT_GT(j["negatives_per_query"].get<double>(), 11.0);
    for (const char* s : {"data", "encode", "loss", "banks", "optimizer", "total"}) {
      EXPECT_GE(j["seconds"][s].get<double>(), 0.0) << s;
    }
    // The banks' update is part of the loss's time; ContAccum's banks take
    // some of it on every step.
    EXPECT_GT(j["seconds"]["banks"].get<double>(), 0.0);
    EXPECT_LE(j["seconds"]["banks"].get<double>(), j["seconds"]["loss"].get<double>());
    EXPECT_GE(j["seconds"]["total"].get<double>(),
              j["seconds"]["encode"].get<double>() + j["seconds"]["loss"].get<double>());
    for (const char* kind : {"in_batch", "hard_negative", "bank", "banked_query"}) {
      EXPECT_GE(j["masked"][kind].get<int64_t>(), 0) << kind;
    }
  }
  // Example i's hard negatives are examples i + 1 and i + 2's positives, and
  // the second epoch meets the first one's copies of its examples: banked,
  // they are masked for their own queries, both ways.
  EXPECT_GT(lines[2]["masked"]["bank"].get<int64_t>() + lines[3]["masked"]["bank"].get<int64_t>(), 0);
  EXPECT_GT(lines[2]["masked"]["banked_query"].get<int64_t>() + lines[3]["masked"]["banked_query"].get<int64_t>(), 0);
  // Checkpoints at each epoch end, the newest 2 kept.
  CheckpointManager manager(dir / "checkpoints", 2);
  ASSERT_EQ(manager.list().size(), 2u);
  EXPECT_EQ(manager.list().back(), manager.path_of(4));
}

// staleness_every: a `staleness` object on every N-th line only, with the
// fields the docs name; without a kept sample the option is refused.
TEST(Trainer, WritesBankStalenessEveryNSteps) {
  auto set = test::tiny_training_set(48);
  Collator collator(test::hashing_tokenizer(kVocab));
  test::TempDir dir;
  auto model = tiny_model(3);
  Trainer trainer(model, StrategyOptions::contaccum(16, 4, 40).staleness_sample(10), set, collator,
                  tiny_options(dir.path.string()).staleness_every(3));
  trainer.train();
  const auto lines = read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  for (const auto& j : lines) {
    const int64_t step = j["step"].get<int64_t>();
    ASSERT_EQ(j.contains("staleness"), step % 3 == 0) << "step " << step;
    if (step % 3 != 0) continue;
    const auto& s = j["staleness"];
    EXPECT_EQ(s["examples"].get<int64_t>(), 10);
    EXPECT_GE(s["seconds"].get<double>(), 0.0);
    EXPECT_GE(s["rank_changed"].get<double>(), 0.0);
    for (const char* bank : {"query", "passage"}) {
      const auto& b = s[bank];
      EXPECT_LE(b["mean_cosine"].get<double>(), 1.0);
      EXPECT_LE(b["min_cosine"].get<double>(), b["mean_cosine"].get<double>());
      EXPECT_EQ(b["min_age"].get<int64_t>(), 1) << "the newest rows were written by the step measured";
      int64_t rows = 0;
      for (const auto& a : b["by_age"]) rows += a["rows"].get<int64_t>();
      EXPECT_EQ(rows, b["rows"].get<int64_t>()) << bank;
    }
    // 16 examples a step into 40 slots: by step 3 the oldest rows are 3 steps old.
    EXPECT_EQ(s["passage"]["max_age"].get<int64_t>(), 3);
  }
  auto other = tiny_model(3);
  EXPECT_THAT(
      [&] {
        Trainer(other, StrategyOptions::contaccum(16, 4, 40), set, collator, TrainerOptions().staleness_every(2));
      },
      ::testing::ThrowsMessage<c10::Error>(::testing::HasSubstr("needs banks and a staleness sample")));
}

TEST(Trainer, ClipsTheGlobalGradientNorm) {
  auto set = test::tiny_training_set(16);
  Collator collator(test::hashing_tokenizer(kVocab));
  auto model = tiny_model(4);
  // max_grad_norm tiny: the applied gradient has norm max_grad_norm.
  Trainer trainer(model, StrategyOptions::grad_accum(16, 4), set, collator,
                  TrainerOptions().max_steps(1).max_grad_norm(1e-3).progress(ProgressMode::Silent).hard_negatives(0));
  trainer.train();
  double sq = 0;
  for (const auto& p : model->parameters()) sq += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), 1e-3, 1e-6);
}

TEST(Trainer, EvaluatesTracksBestAndStopsEarly) {
  auto set = test::tiny_training_set(64);
  Collator collator(test::hashing_tokenizer(kVocab));
  auto model = tiny_model(3);
  Trainer trainer(model, StrategyOptions::grad_accum(16, 8), set, collator,
                  TrainerOptions().max_steps(20).eval_every(2).progress(ProgressMode::Silent));
  // A scripted metric: rises for two evaluations, then falls.
  const std::vector<double> script = {0.1, 0.3, 0.2, 0.25, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0};
  int calls = 0;
  trainer.set_evaluator([&](DualEncoder&) {
    RetrievalMetrics m;
    m.queries = 1;
    m.values = {{"mrr@10", script.at(static_cast<size_t>(calls++))}};
    return m;
  });
  std::vector<int64_t> best_steps;
  trainer.on_new_best([&](DualEncoder&, int64_t step) { best_steps.push_back(step); });
  trainer.add_callback(std::make_shared<EarlyStopping>("mrr@10", 3));
  auto result = trainer.train();
  // Evaluations at steps 2, 4, 6, 8, 10: no improvement after step 4 three
  // times -> stop at step 10.
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(trainer.state().step, 10);
  EXPECT_TRUE(result.stopped_early);
  EXPECT_EQ(result.best_step, 4);
  EXPECT_DOUBLE_EQ(result.best_metric, 0.3);
  EXPECT_EQ(best_steps, (std::vector<int64_t>{2, 4}));
}

TEST(Trainer, RejectsBadOptionsAndMismatchedCheckpoints) {
  using ::testing::HasSubstr;
  auto set = test::tiny_training_set(16);
  Collator collator(test::hashing_tokenizer(kVocab));
  auto model = tiny_model(1);
  EXPECT_THAT([&] { Trainer(model, StrategyOptions::grad_accum(32, 8), set, collator); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("16 examples make no batch of total_batch = 32")));
  EXPECT_THAT([&] { Trainer(model, StrategyOptions::grad_accum(8, 8), set, collator, TrainerOptions().log_every(0)); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("log_every must be >= 1, got 0")));
  test::TempDir dir;
  Trainer a(model, StrategyOptions::grad_accum(8, 4), set, collator,
            TrainerOptions().max_steps(1).output_dir(dir.path.string()).progress(ProgressMode::Silent));
  a.train();
  Trainer b(model, StrategyOptions::grad_accum(8, 4), set, collator,
            TrainerOptions().max_steps(3).output_dir(dir.path.string()));
  EXPECT_THAT([&] { b.resume_latest(); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("belongs to a run of 1 steps, this one has 3")));
  Trainer c(model, StrategyOptions::grad_accum(8, 4), set, collator, TrainerOptions().max_steps(1));
  EXPECT_THAT([&] { c.load_checkpoint(dir / "nothing.pt"); },
              ::testing::ThrowsMessage<c10::Error>(HasSubstr("no file")));
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

// A real collective that counts the gradient reductions.
struct CountingCollective : Collective {
  std::shared_ptr<Collective> inner;
  int64_t reductions = 0;
  explicit CountingCollective(std::shared_ptr<Collective> c) : inner(std::move(c)) {}
  int64_t rank() const override { return inner->rank(); }
  int64_t world_size() const override { return inner->world_size(); }
  torch::Tensor all_gather(const torch::Tensor& t) override { return inner->all_gather(t); }
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    ++reductions;
    inner->all_reduce_sum(tensors);
  }
  void broadcast(torch::Tensor& t, int64_t root) override { inner->broadcast(t, root); }
  void barrier() override { inner->barrier(); }
};

DualEncoder model_without_dropout(uint64_t seed) {
  torch::manual_seed(seed);
  auto tower = [] {
    return BagOfEmbeddingsEncoder(BagOfEmbeddingsEncoderOptions(kVocab, 16).embedding_dim(12).dropout(0.0)).ptr();
  };
  return DualEncoder(tower(), tower());
}

// Two ranks (threads over Gloo) train as one process with twice the
// micro-batch: the same losses and gradient norms (the norms see the reduced
// gradients), one reduction per step, identical weights on both ranks, and
// only rank 0 writes.
TEST(Trainer, TwoRanksTrainAsOneProcessWithTwiceTheMicroBatch) {
  auto set = test::tiny_training_set(40);
  Collator collator(test::hashing_tokenizer(kVocab));
  test::TempDir single_dir, ranks_dir;
  auto options = [](const std::string& dir) { return tiny_options(dir).max_steps(4).checkpoint_every(2); };
  auto single_model = model_without_dropout(7);
  Trainer single(single_model, StrategyOptions::contaccum(16, 8, 32), set, collator, options(single_dir.path.string()));
  single.train();
  const auto want = read_jsonl(single_dir / "metrics.jsonl");

  auto group = make_in_process_group(2);
  std::vector<std::shared_ptr<CountingCollective>> counting;
  std::vector<DualEncoder> models;
  for (int r = 0; r < 2; ++r) {
    counting.push_back(std::make_shared<CountingCollective>(group[static_cast<size_t>(r)]));
    models.push_back(model_without_dropout(7 + 10 * r));  // rank 1's own init is replaced by rank 0's
  }
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      errors[static_cast<size_t>(r)] = test::error_of([&] {
        Trainer t(models[static_cast<size_t>(r)], StrategyOptions::contaccum(16, 4, 32), set, collator,
                  options(ranks_dir.path.string()));
        t.set_collective(counting[static_cast<size_t>(r)]);
        t.train();
      });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "no error");
  EXPECT_EQ(errors[1], "no error");
  const auto got = read_jsonl(ranks_dir / "metrics.jsonl");
  ASSERT_EQ(got.size(), want.size());  // one writer
  for (size_t i = 0; i < want.size(); ++i) {
    for (const char* key : {"loss", "grad_norm", "query_grad_norm", "passage_grad_norm", "negatives_per_query"}) {
      const double w = want[i][key].get<double>();
      EXPECT_NEAR(got[i][key].get<double>(), w, 1e-5 * std::abs(w)) << key << " at step " << i + 1;
    }
  }
  EXPECT_EQ(counting[0]->reductions, 4);
  EXPECT_EQ(counting[1]->reductions, 4);
  const auto a = models[0]->parameters(), b = models[1]->parameters(), c = single_model->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i]));
    EXPECT_TRUE(torch::allclose(a[i], c[i], 1e-4, 1e-5));
  }
  EXPECT_EQ(CheckpointManager(ranks_dir / "checkpoints").list().size(), 2u);
}

}  // namespace
}  // namespace contaccum

namespace contaccum {
namespace {

using ::testing::HasSubstr;

using test::error_of;

// A checkpoint names the run it belongs to field by field: a run with the
// same sizes but another gradient mode, negative scope or bank option is
// refused, naming the field and both values.
TEST(TrainerCheckpoint, RefusesARunOfAnotherGradientModeOrNegativeScope) {
  auto set = test::tiny_training_set(40);
  Collator collator(test::hashing_tokenizer(kVocab));
  test::TempDir dir;
  auto options = tiny_options(dir.path.string()).max_steps(2).checkpoint_every(1);
  Trainer a(tiny_model(1), StrategyOptions::contaccum(16, 4, 32), set, collator, options);
  a.train();
  const auto path = CheckpointManager(dir / "checkpoints").latest().value();
  auto refused = [&](StrategyOptions s) {
    Trainer b(tiny_model(1), s, set, collator, options);
    return error_of([&] { b.load_checkpoint(path); });
  };
  EXPECT_THAT(refused(StrategyOptions::contaccum_grad_cache(16, 4, 32).negatives(NegativeScope::MicroBatch)),
              HasSubstr("gradients = direct, this one has cached (GradCache)"));
  EXPECT_THAT(refused(StrategyOptions::contaccum(16, 4, 32).negatives(NegativeScope::TotalBatch)),
              HasSubstr("negatives = micro-batch, this one has total-batch"));
  EXPECT_THAT(refused(StrategyOptions::contaccum(16, 4, 32).passage_bank(false)),
              HasSubstr("passage_bank = true, this one has false"));
  EXPECT_THAT(refused(StrategyOptions::contaccum(16, 4, 32).clear_banks_after_step(true)),
              HasSubstr("clear_banks_after_step = false, this one has true"));
  Trainer same(tiny_model(1), StrategyOptions::contaccum(16, 4, 32), set, collator, options);
  same.load_checkpoint(path);
  EXPECT_EQ(same.state().step, 2);
}

// Checkpoints of the positional format (before named fields) still load;
// one of a newer format is refused, naming it.
TEST(TrainerCheckpoint, ReadsTheOldFormatAndRefusesANewerOne) {
  auto set = test::tiny_training_set(40);
  Collator collator(test::hashing_tokenizer(kVocab));
  test::TempDir dir;
  auto options = tiny_options("").max_steps(3);
  Trainer a(tiny_model(1), StrategyOptions::contaccum(16, 4, 32), set, collator, options);
  a.add_callback(std::make_shared<StopAt>(2));
  a.train();
  // Format 1, as contaccum wrote it: the trainer's state as 9 positional
  // integers plus best_metric and the skip counts.
  torch::serialize::OutputArchive old, model, optimizer, strategy, rng;
  a.model()->save(model);
  a.optimizer().save(optimizer);
  a.strategy().save(strategy);
  RngState::capture().save(rng);
  old.write("model", model);
  old.write("optimizer", optimizer);
  old.write("strategy", strategy);
  old.write("rng", rng);
  const auto& s = a.state();
  old.write("trainer", torch::tensor({s.step, s.total_steps, s.position.epoch, s.position.batch, s.best_step,
                                      int64_t{16}, int64_t{4}, int64_t{32}, options.hard_negatives()},
                                     torch::kLong));
  old.write("best_metric", torch::tensor(0.25, torch::kDouble));
  old.write("skips", torch::tensor({int64_t{1}, int64_t{0}}, torch::kLong));
  const auto old_path = dir / "old.pt";
  save_archive_atomically(old, old_path);
  Trainer b(tiny_model(2), StrategyOptions::contaccum(16, 4, 32), set, collator, options);
  b.load_checkpoint(old_path);
  EXPECT_EQ(b.state().step, 2);
  EXPECT_EQ(b.state().position.batch, s.position.batch);
  EXPECT_EQ(b.state().best_metric, 0.25);
  EXPECT_EQ(b.state().skipped_steps, 1);
  for (const auto& p : b.model()->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), a.model()->named_parameters()[p.key()])) << p.key();
  }

  torch::serialize::OutputArchive future, state;
  state.write("format", torch::tensor(int64_t{99}, torch::kLong));
  future.write("state", state);
  const auto future_path = dir / "future.pt";
  save_archive_atomically(future, future_path);
  EXPECT_THAT(error_of([&] { b.load_checkpoint(future_path); }),
              HasSubstr("trainer format 99; this contaccum reads formats 1 to 2"));
}

}  // namespace
}  // namespace contaccum
