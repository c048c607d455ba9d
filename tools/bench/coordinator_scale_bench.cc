// 1,000 simulated workers against one coordinator, for docs/benchmarks.md (the elastic
// issue's goal: p99 under 5 ms for PullWork and CompleteWork).
//
// The coordinator runs in a child process (this binary re-executed with --serve): the
// learner's WorkQueue (30 s leases) and CoordinatorService behind a real gRPC server on
// 127.0.0.1 with the learner's thread bound (256), and a feeder thread that keeps items
// queued: each a score item of one (caption, image) pair, submitted in batches of 64 and
// awaited, as the learner's training thread does. The parent registers --workers
// lightweight workers, then for --seconds runs them from --client_threads threads, each
// looping over its share of the workers: PullWork (wait_ms 0) and, when it got an item,
// CompleteWork with a valid one-reward result. It prints the latency percentiles of each
// RPC, the items completed per second, and the coordinator process's RSS and threads.

#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model/test_models.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/weight_stream.h"
#include "learner/service/coordinator_service.h"
#include "learner/service/work_queue.h"

DEFINE_bool(serve, false, "internal: run the coordinator (child process)");
DEFINE_int32(workers, 1000, "simulated workers");
DEFINE_int32(client_threads, 16, "client threads that drive them");
DEFINE_int32(seconds, 10, "measured seconds");

extern char** environ;

namespace duet {
namespace {

constexpr char kToken[] = "scale-bench-token";

v1::WorkItem ScoreItem() {
  v1::WorkItem item;
  auto* q = item.mutable_score()->add_queries();
  q->set_task(v1::TASK_GENERATION);
  q->mutable_input()->add_ids(8);
  const TokenLayout layout = testing::TinyTestLayout();
  for (int i = 0; i < layout.image_tokens; ++i)
    q->mutable_output()->add_ids(layout.image_begin + i);
  return item;
}

int Serve() {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  WorkQueue queue("scale", RealClock(), WorkQueue::kDefaultMaxWorkers, absl::Seconds(30));
  WeightSnapshot snapshot;
  RequestLimits limits;
  limits.layout = testing::TinyTestLayout();
  limits.max_sequence_tokens = 32;
  RendezvousInfo rendezvous;
  rendezvous.run_id = "scale";
  CoordinatorService service(&queue, &snapshot, rendezvous, kToken, limits, nullptr);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  grpc::ResourceQuota quota("scale-bench");
  quota.SetMaxThreads(256);  // the learner's default --max_rpc_threads
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return 1;
  std::printf("%d\n", port);
  std::fflush(stdout);
  for (;;) {  // the training thread's pattern: submit a batch, await it
    std::vector<std::string> ids;
    for (int i = 0; i < 64; ++i)
      ids.push_back(queue.Submit(v1::ROLE_SCORER, ScoreItem()));
    (void)queue.Await(ids, absl::Seconds(60));
  }
}

struct Latencies {
  std::mutex mu;
  std::vector<double> pull_ms, complete_ms, register_ms;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

std::string ProcStatus(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string key, out;
  while (in >> key) {
    std::string value;
    std::getline(in, value);
    if (key == "VmRSS:" || key == "Threads:") absl::StrAppend(&out, key, value, " ");
  }
  return out;
}

int Main(const char* self) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  std::string serve_flag = "--serve";
  char* argv[] = {const_cast<char*>(self), serve_flag.data(), nullptr};
  pid_t child = 0;
  if (posix_spawn(&child, "/proc/self/exe", &actions, nullptr, argv, environ) != 0)
    return 1;
  close(pipe_fds[1]);
  char buf[32] = {0};
  if (read(pipe_fds[0], buf, sizeof(buf) - 1) <= 0) return 1;
  const std::string target = absl::StrCat("127.0.0.1:", atoi(buf));
  const std::string idle = ProcStatus(child);

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = v1::Coordinator::NewStub(channel);
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  Latencies lat;
  std::vector<std::string> ids(FLAGS_workers), sessions(FLAGS_workers);
  std::atomic<int> refused{0};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < FLAGS_client_threads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < FLAGS_workers; i += FLAGS_client_threads) {
          v1::RegisterRequest req;
          req.set_role(v1::ROLE_SCORER);
          req.set_capacity(1);
          req.set_name(absl::StrCat("sim-", i));
          v1::RegisterResponse resp;
          auto ctx = MakeClientContext(kToken, absl::Seconds(30));
          const auto t0 = Clock::now();
          const grpc::Status s = stub->Register(ctx.get(), req, &resp);
          const double ms = ms_since(t0);
          if (!s.ok()) ++refused;
          ids[i] = resp.worker_id();
          sessions[i] = resp.session();
          std::lock_guard<std::mutex> lock(lat.mu);
          lat.register_ms.push_back(ms);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  const std::string registered = ProcStatus(child);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> completed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < FLAGS_client_threads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<double> pulls, completes;
      while (!stop.load()) {
        for (int i = t; i < FLAGS_workers && !stop.load(); i += FLAGS_client_threads) {
          v1::PullWorkRequest req;
          req.set_worker_id(ids[i]);
          req.set_session(sessions[i]);
          req.set_wait_ms(0);
          v1::PullWorkResponse resp;
          auto ctx = MakeClientContext(kToken, absl::Seconds(30));
          auto t0 = Clock::now();
          const grpc::Status s = stub->PullWork(ctx.get(), req, &resp);
          pulls.push_back(ms_since(t0));
          if (!s.ok()) ++refused;
          if (!s.ok() || !resp.has_item()) continue;
          v1::CompleteWorkRequest result;
          result.set_worker_id(ids[i]);
          result.set_session(sessions[i]);
          result.set_item_id(resp.item().item_id());
          result.mutable_score()->add_rewards(-1.0);
          v1::CompleteWorkResponse ack;
          auto cctx = MakeClientContext(kToken, absl::Seconds(30));
          t0 = Clock::now();
          const grpc::Status c = stub->CompleteWork(cctx.get(), result, &ack);
          completes.push_back(ms_since(t0));
          if (c.ok())
            ++completed;
          else
            ++refused;
        }
      }
      std::lock_guard<std::mutex> lock(lat.mu);
      lat.pull_ms.insert(lat.pull_ms.end(), pulls.begin(), pulls.end());
      lat.complete_ms.insert(lat.complete_ms.end(), completes.begin(), completes.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(FLAGS_seconds));
  const std::string loaded = ProcStatus(child);
  stop.store(true);
  for (auto& th : threads) th.join();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);

  std::printf(
      "workers %d, client threads %d, %d s: %ld items completed (%.0f/s), %d calls "
      "refused\n",
      FLAGS_workers, FLAGS_client_threads, FLAGS_seconds,
      static_cast<long>(completed.load()),
      completed.load() / static_cast<double>(FLAGS_seconds), refused.load());
  std::printf("| RPC | calls | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
  for (auto [name, v] :
       {std::pair{"Register", &lat.register_ms}, std::pair{"PullWork", &lat.pull_ms},
        std::pair{"CompleteWork", &lat.complete_ms}}) {
    std::printf("| %s | %zu | %.2f | %.2f | %.2f |\n", name, v->size(),
                Percentile(*v, 0.5), Percentile(*v, 0.99), Percentile(*v, 1.0));
  }
  std::printf("coordinator process: idle %s| %d registered %s| under load %s\n",
              idle.c_str(), FLAGS_workers, registered.c_str(), loaded.c_str());
  return 0;
}

}  // namespace
}  // namespace duet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_serve) return duet::Serve();
  return duet::Main(argv[0]);
}
