// The banks' arithmetic against the machine's matrix unit, measured in one run.
//
//   contaccum_bench_banks [--micro-batch 32] [--total-batch 128] [--dim 1024] [--memory 1024,4096,8192]
//                         [--rounds 40] [--passage-length 128] [--vocab 16000]
//
// Four kinds of JSON lines on stdout (bench/banks/run.sh collects them):
//   "loss_call": one micro-batch's loss alone, forward and backward, with
//     cosine similarity and with the inner product;
//   "sgemm": LibTorch's float32 matrix product at the bank's shapes (a
//     micro-batch's rows against the whole bank, and back) and at a large
//     square, the rate the bank work is held against;
//   "bank_work": for each bank size m, what ContAccum adds to one
//     micro-batch: the loss forward and backward with the banks minus
//     without them, plus `BankScoreCache::update` for the enqueued rows; its
//     floating-point operations counted from the shapes, hence GFLOP/s;
//     and the loss's element-wise kernels on that micro-batch's bank tiles
//     (softmax_tile.h; the fastest of 1,000 calls each);
//   "steps": whole optimizer steps of the main job's tower (a shared
//     bag-of-embeddings, attention pooling) with GradAccum and with ContAccum
//     at each m, interleaved round by round so that machine noise hits them
//     alike; ContAccum twice at each m, the loss making its products with
//     the short products (short_products.h) and with LibTorch's sgemm; the
//     excess of ContAccum over GradAccum against the arithmetic floor (the
//     bank's products at the faster of the measured sgemm and short rates);
//     and GradAccum whose tower only reads the banks' bytes once per
//     micro-batch (BankBytesTower): what bringing the banks in costs; and,
//     from a few more rounds with the loss's backward pass timed apart
//     (loss_backward_timer.h), each step's excess split by part.
#include "bank_bench.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

using namespace contaccum;
using namespace contaccum::bench;

namespace {

std::vector<int64_t> parse_bank_sizes(const std::string& text) {
  const auto out = bench::parse_list(text, "--memory");
  for (const int64_t v : out)
    TORCH_CHECK(v > 0, "--memory must be a comma-separated list of positive integers, got '", text, "'");
  TORCH_CHECK(!out.empty(), "--memory must name at least one bank size");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The banks' arithmetic against sgemm, and ContAccum's steps against GradAccum's"};
  StepSetup steps_setup;
  std::string memories = "1024,4096,8192";
  app.add_option("--micro-batch", steps_setup.micro, "rows per micro-batch")->check(CLI::PositiveNumber);
  app.add_option("--total-batch", steps_setup.total, "examples per optimizer step")->check(CLI::PositiveNumber);
  app.add_option("--dim", steps_setup.d, "representation width")->check(CLI::PositiveNumber);
  app.add_option("--memory", memories, "bank sizes, comma-separated");
  app.add_option("--rounds", steps_setup.rounds, "timed repetitions")->check(CLI::PositiveNumber);
  app.add_option("--passage-length", steps_setup.passage_length, "tokens per passage")->check(CLI::PositiveNumber);
  app.add_option("--vocab", steps_setup.vocab, "embedding table rows")->check(CLI::PositiveNumber);
  bool skip_steps = false;
  app.add_flag("--no-steps", skip_steps, "only the sgemm and bank-work lines");
  CLI11_PARSE(app, argc, argv);
  try {
    configure_allocator();
    steps_setup.memories = parse_bank_sizes(memories);
    torch::manual_seed(1);
    const int64_t n = steps_setup.micro, d = steps_setup.d, rounds = steps_setup.rounds;
    const double square = sgemm_rate(2048, 2048, d, std::max<int64_t>(5, rounds / 4));
    std::cout << json{{"kind", "sgemm"},
                      {"shape", {2048, 2048, d}},
                      {"gflops", square},
                      {"threads", at::get_num_threads()},
                      {"machine", machine()}}
                     .dump()
              << std::endl;
    auto call = loss_call_us(n, d);
    call["aten_view_us"] = aten_view_us();
    std::cout << call.dump() << std::endl;
    std::map<int64_t, double> floor_ms_per_gflop;
    for (int64_t m : steps_setup.memories) {
      BankWorkSetup s;
      s.n = n, s.d = d, s.m = m, s.rounds = rounds;
      const auto line = bank_work(s);
      std::cout << line.dump() << std::endl;
      floor_ms_per_gflop[m] = line["floor_ms"].get<double>() / line["required_gflop"].get<double>();
    }
    if (skip_steps) return 0;
    for (const auto& line : steps(steps_setup, floor_ms_per_gflop)) std::cout << line.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "contaccum_bench_banks: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
