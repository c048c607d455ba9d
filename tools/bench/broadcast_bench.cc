// Weight broadcast benchmarks (Google Benchmark):
//   BM_Checksum: WeightChecksum (plain XXH64) over 64 MiB of floats (counter GB: GB/s).
//   BM_KeyedChecksum: the keyed checksum (WeightMac: Poly1305 under a one-time key)
//     over the same 64 MiB.
//   BM_Broadcast/preset/receivers/bucket_mib/keyed: WeightBroadcaster from rank 0 to 1
//     or 2 receivers of the parameters of preset 0 = small (~25M) or 1 = base (~95M),
//     with 4 or 32 MiB buckets, over Gloo, with the plain (keyed 0) or the keyed checksum
//     (keyed 1: sender and receivers hold the run key, as in a real run).
//
// The receivers are separate processes: this binary re-executes itself (/proc/self/exe
// --broadcast_worker ...), so every byte crosses real loopback TCP and each receiver
// does what a worker does (receive into staging, verify the checksum). One iteration is
// one broadcast, timed on rank 0 from the start of the broadcast until every receiver
// has acknowledged the verified version (a one-int64 broadcast from each receiver).
// Counters: GB/s = parameter bytes / time (what each receiver gets), agg_GB/s = that
// times the number of receivers (what rank 0 sends). After each run the receivers apply
// the last weights and report their checksum, which must equal rank 0's.
//   BM_BroadcastScale/preset/receivers/topology: the keyed broadcast of preset 1 (base)
//     with 4 MiB buckets to 1, 2, 4 or 8 receivers, by the collective's own broadcast
//     (topology 0: Gloo's root sends a copy to each receiver) or down the pipelined chain
//     (topology 1), 3 iterations each.
//   BM_BroadcastWire/preset/receivers/keyed/wire: preset 1 (base), 4 MiB buckets, to 1
//     or 2 receivers, plain or keyed checksum, float32 (wire 0) or bfloat16 (wire 1) on
//     the wire, 3 iterations each: the bytes per sync and whether the digest shows in
//     the time (keyed 0 against 1). Counter wire_MB: what one receiver gets.
// tools/bench/run_broadcast_bench.sh puts the numbers next to iperf3's loopback TCP rate;
// tools/bench/run_cluster_broadcast_bench.sh runs BM_BroadcastScale on an emulated
// cluster: every rank in its own network namespace behind a shaped link.
//
// Where the ranks run (set by run_cluster_broadcast_bench.sh; unset: this machine's
// loopback): DUET_BENCH_LAUNCHER, a command line with {rank} in it that is put before
// each receiver's own (e.g. "ip netns exec ns-{rank}"), and DUET_BENCH_HOST, the address
// of rank {rank} (e.g. "10.213.0.{rank+1}" is written "10.213.0.{rank1}"): each rank's
// Gloo transport binds its own address and the receivers reach rank 0's store at its.

#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/model/model_config.h"
#include "common/model/transformer.h"
#include "common/weights/collective.h"
#include "common/weights/weight_mac.h"
#include "common/weights/weight_sync.h"

extern char** environ;

namespace duet {
namespace {

constexpr int64_t kVocab = 544;
constexpr int64_t kMaxPositions = 64;
constexpr absl::Duration kTimeout = absl::Seconds(120);

// Commands rank 0 broadcasts before each step of the protocol.
constexpr int64_t kCmdBroadcast = 1;
constexpr int64_t kCmdBroadcastKeyed = 4;
constexpr int64_t kCmdVerify = 2;
constexpr int64_t kCmdExit = 3;

const char* PresetName(int preset) { return preset == 0 ? "small" : "base"; }

Transformer MakeModel(int preset, uint64_t seed) {
  absl::StatusOr<ModelConfig> config =
      ModelConfig::Preset(PresetName(preset), kVocab, kMaxPositions);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    std::exit(1);
  }
  absl::StatusOr<Transformer> model = Transformer::Create(*config, seed);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(model);
}

const Transformer& SenderModel(int preset) {
  static auto* models = new std::map<int, Transformer>();
  auto it = models->find(preset);
  if (it == models->end())
    it = models->emplace(preset, MakeModel(preset, /*seed=*/1)).first;
  return it->second;
}

// Every rank takes part in one small broadcast from each receiver; returns the values.
absl::StatusOr<std::vector<int64_t>> AckRound(Collective& collective, int64_t mine) {
  std::vector<int64_t> acks;
  for (int q = 1; q < collective.world_size(); ++q) {
    torch::Tensor t = torch::full({1}, collective.rank() == q ? mine : 0, torch::kInt64);
    if (absl::Status s = collective.Broadcast(t, /*root=*/q); !s.ok()) return s;
    acks.push_back(t.item<int64_t>());
  }
  return acks;
}

absl::Status SendCommand(Collective& collective, int64_t command) {
  torch::Tensor t = torch::full({1}, command, torch::kInt64);
  return collective.Broadcast(t, /*root=*/0);
}

// DUET_BENCH_HOST for `rank`, or "" (loopback) when unset.
std::string RankHost(int rank) {
  const char* pattern = std::getenv("DUET_BENCH_HOST");
  if (pattern == nullptr || *pattern == '\0') return "";
  return absl::StrReplaceAll(
      pattern, {{"{rank1}", absl::StrCat(rank + 1)}, {"{rank}", absl::StrCat(rank)}});
}

// Options shared by every rank of a bench group.
CollectiveOptions RankOptions(int port, const std::string& prefix, int rank, int world) {
  CollectiveOptions options;
  options.store_port = port;
  options.rank = rank;
  options.world_size = world;
  options.timeout = kTimeout;
  options.group_prefix = prefix;
  if (const std::string rank0 = RankHost(0); !rank0.empty()) {
    options.store_host = rank0;
    options.device_hostname = RankHost(rank);
  }
  return options;
}

// The run key both ends hold in the keyed runs.
WeightMacKey BenchKey() { return WeightMacKey::Derive("bench-token", "bench-prefix"); }

// ---- Receiver process. ----

int WorkerMain(int port, const std::string& prefix, int rank, int world, int preset) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
  absl::StatusOr<std::unique_ptr<Collective>> collective =
      CreateCollective(RankOptions(port, prefix, rank, world));
  if (!collective.ok()) {
    std::fprintf(stderr, "worker %d: %s\n", rank, collective.status().ToString().c_str());
    return 1;
  }
  Transformer model = MakeModel(preset, /*seed=*/100 + rank);
  if (!AckRound(**collective, /*mine=*/1).ok()) return 1;  // ready
  WeightReceiver plain_receiver(collective->get(), /*root=*/0);
  WeightReceiver keyed_receiver(collective->get(), /*root=*/0, BenchKey());
  torch::Tensor staging;
  bool have_weights = false;
  while (true) {
    torch::Tensor command = torch::zeros({1}, torch::kInt64);
    if (absl::Status s = (*collective)->Broadcast(command, /*root=*/0); !s.ok()) {
      std::fprintf(stderr, "worker %d: %s\n", rank, s.ToString().c_str());
      return 1;
    }
    int64_t ack = 0;
    switch (command.item<int64_t>()) {
      case kCmdBroadcast:
      case kCmdBroadcastKeyed: {
        WeightReceiver& receiver = command.item<int64_t>() == kCmdBroadcastKeyed
                                       ? keyed_receiver
                                       : plain_receiver;
        absl::StatusOr<int64_t> version = receiver.Receive(model.parameters(), &staging);
        if (!version.ok()) {
          std::fprintf(stderr, "worker %d: %s\n", rank,
                       version.status().ToString().c_str());
        }
        have_weights = version.ok();
        ack = version.ok() ? *version : -1;
        break;
      }
      case kCmdVerify:
        if (have_weights) WeightReceiver::ApplyStaging(staging, model.parameters());
        ack = static_cast<int64_t>(WeightChecksum(model.parameters()));
        break;
      case kCmdExit:
        return 0;
      default:
        std::fprintf(stderr, "worker %d: unknown command\n", rank);
        return 1;
    }
    if (!AckRound(**collective, ack).ok()) return 1;
  }
}

// ---- Rank 0. ----

StoreServer& Store() {
  static StoreServer* server = [] {
    absl::StatusOr<std::unique_ptr<StoreServer>> s =
        StoreServer::Start(/*port=*/0, kTimeout);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.status().ToString().c_str());
      std::exit(1);
    }
    return s->release();
  }();
  return *server;
}

// Rank 0 of a group whose receivers are child processes.
struct Group {
  int preset = -1;
  int receivers = 0;
  std::vector<pid_t> children;
  std::unique_ptr<Collective> collective;
};

Group* g_group = nullptr;
int g_groups_started = 0;

void StopGroup() {
  if (g_group == nullptr) return;
  if (g_group->collective != nullptr) (void)SendCommand(*g_group->collective, kCmdExit);
  for (pid_t pid : g_group->children) {
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
  }
  delete g_group;
  g_group = nullptr;
}

absl::StatusOr<Group*> GetGroup(int preset, int receivers) {
  if (g_group != nullptr && g_group->preset == preset &&
      g_group->receivers == receivers) {
    return g_group;
  }
  StopGroup();
  auto group = std::make_unique<Group>();
  group->preset = preset;
  group->receivers = receivers;
  const std::string prefix = absl::StrCat("bench/", g_groups_started++);
  const int world = receivers + 1;
  // The launcher's words, then this binary by its real path (a launcher such as
  // `ip netns exec` execs it from a new process, where /proc/self/exe would be itself).
  char self[4096];
  const ssize_t self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (self_len <= 0) return absl::InternalError("readlink /proc/self/exe failed");
  self[self_len] = '\0';
  const char* launcher = std::getenv("DUET_BENCH_LAUNCHER");
  for (int rank = 1; rank < world; ++rank) {
    std::vector<std::string> args;
    if (launcher != nullptr && *launcher != '\0') {
      for (absl::string_view word : absl::StrSplit(launcher, ' ', absl::SkipEmpty())) {
        args.push_back(absl::StrReplaceAll(word, {{"{rank}", absl::StrCat(rank)}}));
      }
    }
    for (std::string a :
         {std::string(self), std::string("--broadcast_worker"),
          absl::StrCat("--port=", Store().port()), absl::StrCat("--prefix=", prefix),
          absl::StrCat("--rank=", rank), absl::StrCat("--world=", world),
          absl::StrCat("--preset=", preset)}) {
      args.push_back(std::move(a));
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (int err = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
        err != 0) {
      return absl::InternalError(absl::StrCat("posix_spawn: ", std::strerror(err)));
    }
    group->children.push_back(pid);
  }
  g_group = group.release();  // from here StopGroup reaps the children
  absl::StatusOr<std::unique_ptr<Collective>> collective =
      CreateCollective(RankOptions(Store().port(), prefix, /*rank=*/0, world));
  if (!collective.ok()) {
    for (pid_t pid : g_group->children) kill(pid, SIGKILL);
    StopGroup();
    return collective.status();
  }
  g_group->collective = *std::move(collective);
  // Untimed: wait until every receiver has built its model, then one warm-up broadcast
  // (first-touch of the receivers' staging buffers), down the chain: on slow links the
  // collective's broadcast to 8 receivers takes 8 times as long, for the same bytes.
  absl::StatusOr<std::vector<int64_t>> ready = AckRound(*g_group->collective, /*mine=*/0);
  absl::Status s = ready.status();
  if (s.ok()) s = SendCommand(*g_group->collective, kCmdBroadcast);
  if (s.ok()) {
    WeightBroadcaster warm_up(g_group->collective.get(), kDefaultBucketBytes,
                              /*key=*/std::nullopt, BroadcastTopology::kChain);
    s = warm_up.Broadcast(SenderModel(preset).parameters(), /*version=*/0);
  }
  if (s.ok()) s = AckRound(*g_group->collective, /*mine=*/0).status();
  if (!s.ok()) {
    for (pid_t pid : g_group->children) kill(pid, SIGKILL);
    g_group->collective.reset();
    StopGroup();
    return s;
  }
  return g_group;
}

void BM_Checksum(benchmark::State& state) {
  torch::manual_seed(0);
  const torch::Tensor flat = torch::randn({int64_t{16} << 20});  // 64 MiB
  const double bytes = static_cast<double>(flat.numel()) * sizeof(float);
  uint64_t sink = 0;
  for (auto _ : state) {
    sink ^= WeightChecksum(flat);
    benchmark::DoNotOptimize(sink);
  }
  state.counters["GB"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Checksum)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_KeyedChecksum(benchmark::State& state) {
  torch::manual_seed(0);
  const torch::Tensor flat = torch::randn({int64_t{16} << 20});  // 64 MiB
  const size_t bytes = static_cast<size_t>(flat.numel()) * sizeof(float);
  const WeightMacKey key = BenchKey();
  uint8_t sink = 0;
  for (auto _ : state) {
    WeightMac mac(key, NewWeightMacNonce());  // per message, as in a broadcast
    mac.Update(flat.data_ptr(), bytes);
    sink ^= mac.Final()[0];
    benchmark::DoNotOptimize(sink);
  }
  state.counters["GB"] = benchmark::Counter(
      static_cast<double>(bytes) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_KeyedChecksum)->Unit(benchmark::kMillisecond)->UseRealTime();

// One broadcast per iteration, timed from the command until every receiver has
// acknowledged the verified version; then the receivers' applied weights are checked.
void RunBroadcast(benchmark::State& state, int preset, int receivers, int64_t bucket_mib,
                  bool keyed, BroadcastTopology topology,
                  WireDtype wire = WireDtype::kFloat32) {
  const int64_t bucket_bytes = bucket_mib << 20;
  const std::vector<torch::Tensor>& params = SenderModel(preset).parameters();
  const double bytes = static_cast<double>(TotalNumel(params)) * sizeof(float);
  const double wire_bytes =
      static_cast<double>(TotalNumel(params)) * WireElementSize(wire);
  absl::StatusOr<Group*> group = GetGroup(preset, receivers);
  if (!group.ok()) {
    state.SkipWithError(group.status().ToString().c_str());
    return;
  }
  Collective& collective = *(*group)->collective;
  WeightBroadcaster broadcaster(
      &collective, bucket_bytes,
      keyed ? std::optional<WeightMacKey>(BenchKey()) : std::nullopt, topology, wire);
  int64_t version = 0;
  double seconds = 0;
  for (auto _ : state) {
    ++version;
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = SendCommand(collective, keyed ? kCmdBroadcastKeyed : kCmdBroadcast);
    if (s.ok()) s = broadcaster.Broadcast(params, version);
    absl::StatusOr<std::vector<int64_t>> acks =
        s.ok() ? AckRound(collective, /*mine=*/0)
               : absl::StatusOr<std::vector<int64_t>>(s);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!acks.ok()) {
      state.SkipWithError(acks.status().ToString().c_str());
      StopGroup();
      return;
    }
    for (int64_t ack : *acks) {
      if (ack != version) {
        state.SkipWithError("a receiver failed to verify the weights");
        return;
      }
    }
    state.SetIterationTime(elapsed);
    seconds += elapsed;
  }
  // The receivers apply the last weights and report their checksum.
  absl::Status s = SendCommand(collective, kCmdVerify);
  absl::StatusOr<std::vector<int64_t>> checksums =
      s.ok() ? AckRound(collective, /*mine=*/0) : absl::StatusOr<std::vector<int64_t>>(s);
  if (!checksums.ok()) {
    state.SkipWithError(checksums.status().ToString().c_str());
    StopGroup();
    return;
  }
  // What the receivers hold: the weights, rounded to the wire dtype and widened back.
  const auto expected = static_cast<int64_t>(WeightChecksum(
      FlattenParameters(params).to(ScalarTypeOf(wire)).to(torch::kFloat32)));
  for (int64_t checksum : *checksums) {
    if (checksum != expected) {
      state.SkipWithError("received weights differ from the sent ones");
      return;
    }
  }
  state.SetLabel(absl::StrCat(
      PresetName(preset), " ", TotalNumel(params) / 1000000, "M params, ", receivers,
      " receiver(s), ", bucket_mib, " MiB buckets, ", keyed ? "keyed" : "plain",
      " checksum, ", topology == BroadcastTopology::kChain ? "chain" : "collective",
      wire == WireDtype::kBFloat16 ? ", bfloat16 on the wire" : ""));
  const double per_receiver =
      seconds > 0 ? bytes * state.iterations() / seconds / 1e9 : 0;
  state.counters["GB/s"] = per_receiver;
  state.counters["agg_GB/s"] = per_receiver * receivers;
  state.counters["MB"] = bytes / 1e6;
  state.counters["wire_MB"] = wire_bytes / 1e6;
  state.counters["s"] = seconds / state.iterations();
}

void BM_Broadcast(benchmark::State& state) {
  RunBroadcast(state, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
               state.range(2), state.range(3) != 0, BroadcastTopology::kCollective);
}
BENCHMARK(BM_Broadcast)
    ->ArgNames({"preset", "receivers", "bucket_mib", "keyed"})
    ->Apply([](benchmark::internal::Benchmark* b) {
      // Bucket size and keying vary fastest: runs of one (preset, receivers) share their
      // group.
      for (int preset : {0, 1}) {
        for (int receivers : {1, 2}) {
          for (int bucket_mib : {4, 32}) {
            for (int keyed : {0, 1}) b->Args({preset, receivers, bucket_mib, keyed});
          }
        }
      }
    })
    ->UseManualTime()
    ->MinTime(1.0)
    ->Unit(benchmark::kMillisecond);

void BM_BroadcastScale(benchmark::State& state) {
  RunBroadcast(
      state, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
      /*bucket_mib=*/4, /*keyed=*/true,
      state.range(2) != 0 ? BroadcastTopology::kChain : BroadcastTopology::kCollective);
}
BENCHMARK(BM_BroadcastScale)
    ->ArgNames({"preset", "receivers", "topology"})
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (int receivers : {1, 2, 4, 8}) {
        for (int topology : {0, 1}) b->Args({1, receivers, topology});
      }
    })
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

void BM_BroadcastWire(benchmark::State& state) {
  RunBroadcast(state, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
               /*bucket_mib=*/4, state.range(2) != 0, BroadcastTopology::kCollective,
               state.range(3) != 0 ? WireDtype::kBFloat16 : WireDtype::kFloat32);
}
BENCHMARK(BM_BroadcastWire)
    ->ArgNames({"preset", "receivers", "keyed", "wire"})
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (int receivers : {1, 2}) {
        for (int wire : {0, 1}) {
          for (int keyed : {0, 1}) b->Args({1, receivers, keyed, wire});
        }
      }
    })
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

bool ParseWorkerFlag(const char* arg, const char* name, int* value) {
  const std::string prefix = absl::StrCat("--", name, "=");
  if (!absl::StartsWith(arg, prefix)) return false;
  return absl::SimpleAtoi(arg + prefix.size(), value);
}

}  // namespace
}  // namespace duet

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--broadcast_worker") == 0) {
    int port = 0, rank = 0, world = 0, preset = 0;
    std::string prefix;
    for (int i = 2; i < argc; ++i) {
      if (absl::StartsWith(argv[i], "--prefix=")) {
        prefix = argv[i] + std::strlen("--prefix=");
      } else if (!duet::ParseWorkerFlag(argv[i], "port", &port) &&
                 !duet::ParseWorkerFlag(argv[i], "rank", &rank) &&
                 !duet::ParseWorkerFlag(argv[i], "world", &world) &&
                 !duet::ParseWorkerFlag(argv[i], "preset", &preset)) {
        std::fprintf(stderr, "unknown worker flag %s\n", argv[i]);
        return 2;
      }
    }
    return duet::WorkerMain(port, prefix, rank, world, preset);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  duet::StopGroup();
  benchmark::Shutdown();
  return 0;
}
