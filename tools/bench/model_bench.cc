// Model throughput benchmarks (Google Benchmark):
//   BM_Gemm           fp32 1024^3 matmul: the machine's roofline, measured in this run
//   BM_Forward/P/B    teacher-forced scoring forward, tokens/s and fraction of roofline
//   BM_Decode/P/B     KV-cached sampling decode, tokens/s and fraction of roofline
// P: 0 = tiny, 1 = small. B: batch. The FLOPs of a token are taken as 2 x parameters.
//
// --bench_model_dir=DIR also writes the benchmarked models there (DIR/tiny, DIR/small) so
// that tools/bench/decode_pytorch.py can run the same weights; see
// tools/bench/run_model_bench.sh.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <string>

#include "common/base/file_util.h"
#include "common/model/generation.h"
#include "common/model/sampling.h"
#include "common/model/transformer.h"

namespace duet {
namespace {

constexpr int64_t kVocab = 544;
constexpr int64_t kPrompt = 16;
constexpr int64_t kNew = 48;
constexpr int64_t kForwardLen = 48;

std::string g_model_dir;
double g_roofline_gflops = 0;

double MeasureRoofline() {
  torch::Tensor a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  torch::Tensor c = torch::matmul(a, b);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) c = torch::matmul(a, b);
    double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 4 * 2.0 * 1024 * 1024 * 1024 / s / 1e9);
  }
  return best;
}

const Transformer& Model(int preset) {
  static std::map<int, Transformer>* models = new std::map<int, Transformer>();
  auto it = models->find(preset);
  if (it == models->end()) {
    const std::string name = preset == 0 ? "tiny" : "small";
    ModelConfig c = *ModelConfig::Preset(name, kVocab, kPrompt + kNew);
    Transformer m = *Transformer::Create(c, 1);
    if (!g_model_dir.empty()) {
      absl::Status s = m.Save(JoinPath(g_model_dir, name));
      if (!s.ok())
        std::fprintf(stderr, "cannot save %s: %s\n", name.c_str(), s.ToString().c_str());
    }
    it = models->emplace(preset, std::move(m)).first;
  }
  return it->second;
}

void SetRates(benchmark::State& state, const Transformer& m, double tokens,
              double seconds) {
  const double tps = tokens / seconds;
  state.counters["tok_per_s"] = tps;
  state.counters["gflops"] = 2.0 * m.config().NumParameters() * tps / 1e9;
  state.counters["roofline_frac"] = state.counters["gflops"] / g_roofline_gflops;
}

void BM_Gemm(benchmark::State& state) {
  torch::Tensor a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(a, b));
  state.counters["gflops"] = benchmark::Counter(
      2.0 * 1024 * 1024 * 1024 / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gemm)->Unit(benchmark::kMillisecond);

void BM_Forward(benchmark::State& state) {
  const Transformer& m = Model(static_cast<int>(state.range(0)));
  const int64_t b = state.range(1);
  torch::InferenceMode guard;
  torch::Tensor tokens = torch::randint(0, kVocab, {b, kForwardLen}, torch::kInt64);
  double seconds = 0, tokens_done = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(m.ForwardUnchecked(tokens, torch::Tensor()));
    seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens_done += b * kForwardLen;
  }
  SetRates(state, m, tokens_done, seconds);
}

void BM_Decode(benchmark::State& state) {
  const Transformer& m = Model(static_cast<int>(state.range(0)));
  const int64_t b = state.range(1);
  torch::InferenceMode guard;
  torch::Tensor prompt = torch::randint(0, kVocab, {b, kPrompt}, torch::kInt64);
  std::vector<uint64_t> seeds(b);
  for (int64_t i = 0; i < b; ++i) seeds[i] = i;
  SamplingParams sampling;
  double seconds = 0, tokens_done = 0;
  for (auto _ : state) {
    KvCache cache = m.NewCache(torch::zeros({b}, torch::kInt64), kPrompt + kNew);
    torch::Tensor logits = m.Step(prompt, cache).select(1, kPrompt - 1);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t t = 0; t < kNew; ++t) {
      SampledTokens s = SampleTokens(logits, torch::Tensor(), sampling, seeds, t);
      if (t + 1 < kNew) logits = m.Step(s.tokens.unsqueeze(1), cache).select(1, 0);
    }
    seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens_done += b * kNew;
  }
  SetRates(state, m, tokens_done, seconds);
}

void ModelArgs(benchmark::internal::Benchmark* bm) {
  for (int preset : {0, 1}) {
    for (int batch : {1, 16, 64, 256}) bm->Args({preset, batch});
  }
  bm->ArgNames({"preset", "batch"})->Unit(benchmark::kMillisecond)->MinTime(1.0);
}
BENCHMARK(BM_Forward)->Apply(ModelArgs);
BENCHMARK(BM_Decode)->Apply(ModelArgs);

}  // namespace
}  // namespace duet

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--bench_model_dir=", 0) == 0) duet::g_model_dir = a.substr(18);
  }
  // One LibTorch intra-op thread (GEMMs use OpenBLAS's own pool), as every Duet binary.
  at::set_num_threads(1);
  duet::g_roofline_gflops = duet::MeasureRoofline();
  std::fprintf(stderr, "roofline (fp32 1024^3 matmul, best of 5): %.1f GFLOP/s\n",
               duet::g_roofline_gflops);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
