// Load on a running duet-learner's control plane, for
// tools/bench/run_control_plane_bench.sh:
//   1. --registrations Register attempts (rollout role, so the run never starts), from
//      a bounded number of client threads; counts OK and RESOURCE_EXHAUSTED;
//   2. --polls concurrent PullWork long-polls (wait --poll_wait_ms), one per registered
//      worker id, all in flight at once through the async API on one client thread;
//      counts the codes.
// After each phase, and while the polls are in flight (--sample_after_ms after they are
// sent), it reads the learner's VmRSS and thread count from /proc/<--learner_pid>/status.
// Prints one JSON object.

#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc_util.h"
#include "duet/v1/coordinator.grpc.pb.h"

DEFINE_string(learner, "127.0.0.1:50051", "the learner's gRPC address");
DEFINE_string(auth_token, "", "the run's token");
DEFINE_int32(learner_pid, 0, "the learner's pid (for /proc/<pid>/status)");
DEFINE_int32(registrations, 10000, "Register attempts");
DEFINE_int32(register_threads, 8, "client threads that register");
DEFINE_int32(polls, 1000, "concurrent PullWork long-polls");
DEFINE_int32(poll_wait_ms, 5000, "wait_ms of each long-poll");
DEFINE_int32(poll_channels, 100,
             "connections the long-polls are spread over (a real worker has its own)");
DEFINE_int32(sample_after_ms, 2000, "when to sample the learner while the polls wait");
DEFINE_int32(
    probes, 200,
    "GetRunStatus and Heartbeat calls (each) timed while the polls wait, one every "
    "5 ms");

namespace duet {
namespace {

struct ProcSample {
  long rss_kib = -1;
  long threads = -1;
};

ProcSample Sample(int pid) {
  ProcSample s;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:")
      in >> s.rss_kib;
    else if (key == "Threads:")
      in >> s.threads;
    std::string rest;
    std::getline(in, rest);
  }
  return s;
}

std::string Json(const ProcSample& s) {
  return absl::StrCat("{\"rss_mib\": ", s.rss_kib / 1024.0, ", \"threads\": ", s.threads,
                      "}");
}

std::string Json(const std::map<std::string, int>& codes) {
  std::string out = "{";
  for (const auto& [code, n] : codes) {
    absl::StrAppend(&out, out.size() > 1 ? ", " : "", "\"", code, "\": ", n);
  }
  return out + "}";
}

// Latency percentiles (ms) of `ms`, and the codes of the calls, as JSON.
std::string LatencyJson(std::vector<double> ms, const std::map<std::string, int>& codes) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms.empty() ? -1.0
                      : ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  return absl::StrCat("{\"p50_ms\": ", at(0.5), ", \"p99_ms\": ", at(0.99),
                      ", \"max_ms\": ", ms.empty() ? -1.0 : ms.back(),
                      ", \"codes\": ", Json(codes), "}");
}

std::string CodeName(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    default:
      return absl::StrCat("code_", static_cast<int>(s.error_code()));
  }
}

int Main() {
  auto channel = grpc::CreateChannel(FLAGS_learner, grpc::InsecureChannelCredentials());
  auto stub = v1::Coordinator::NewStub(channel);
  const ProcSample idle = Sample(FLAGS_learner_pid);

  // Phase 1: registrations.
  std::mutex mu;
  std::map<std::string, int> register_codes;
  std::vector<std::string> ids, sessions;
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < FLAGS_register_threads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < FLAGS_registrations; i = next++) {
        v1::RegisterRequest req;
        req.set_role(v1::ROLE_ROLLOUT);
        req.set_capacity(1);
        req.set_name(absl::StrCat("bench-", i));
        v1::RegisterResponse resp;
        auto ctx = MakeClientContext(FLAGS_auth_token, absl::Seconds(30));
        const grpc::Status s = stub->Register(ctx.get(), req, &resp);
        std::lock_guard<std::mutex> lock(mu);
        ++register_codes[CodeName(s)];
        if (s.ok()) {
          ids.push_back(resp.worker_id());
          sessions.push_back(resp.session());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const ProcSample after_registrations = Sample(FLAGS_learner_pid);

  // Phase 2: concurrent long-polls through one completion queue.
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::PullWorkResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::PullWorkResponse>> reader;
  };
  grpc::CompletionQueue cq;
  const int polls = std::min<int>(FLAGS_polls, static_cast<int>(ids.size()));
  std::vector<Call> calls(polls);
  const auto polls_start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> poll_stubs;
  for (int c = 0; c < std::max(1, FLAGS_poll_channels); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("duet.poll_channel", c);  // a distinct argument: a connection of its own
    poll_stubs.push_back(v1::Coordinator::NewStub(grpc::CreateCustomChannel(
        FLAGS_learner, grpc::InsecureChannelCredentials(), args)));
  }
  for (int i = 0; i < polls; ++i) {
    v1::PullWorkRequest req;
    req.set_worker_id(ids[i]);
    req.set_session(sessions[i]);
    req.set_wait_ms(FLAGS_poll_wait_ms);
    calls[i].ctx = MakeClientContext(FLAGS_auth_token,
                                     absl::Milliseconds(FLAGS_poll_wait_ms + 30000));
    calls[i].reader =
        poll_stubs[i % poll_stubs.size()]->AsyncPullWork(calls[i].ctx.get(), req, &cq);
    calls[i].reader->Finish(&calls[i].resp, &calls[i].status,
                            reinterpret_cast<void*>(static_cast<intptr_t>(i)));
  }
  // While they wait: the control calls an operator and a busy worker make, timed, on
  // their own channel (a worker's heartbeat comes over its own connection).
  auto probe_channel =
      grpc::CreateCustomChannel(FLAGS_learner, grpc::InsecureChannelCredentials(), [] {
        grpc::ChannelArguments args;
        args.SetInt("duet.probe", 1);  // not shared with the polls' channel
        return args;
      }());
  auto probe_stub = v1::Coordinator::NewStub(probe_channel);
  std::vector<double> status_ms, heartbeat_ms;
  std::map<std::string, int> status_codes, heartbeat_codes;
  const auto probe_start = std::chrono::steady_clock::now();
  const size_t prober = ids.size() > static_cast<size_t>(polls) ? polls : 0;
  for (int i = 0; i < FLAGS_probes && !ids.empty(); ++i) {
    auto timed = [](const std::function<grpc::Status()>& call, std::vector<double>* ms,
                    std::map<std::string, int>* codes) {
      const auto t0 = std::chrono::steady_clock::now();
      const grpc::Status s = call();
      ms->push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
              .count());
      ++(*codes)[CodeName(s)];
    };
    timed(
        [&] {
          v1::GetRunStatusRequest req;
          v1::RunStatus resp;
          auto ctx = MakeClientContext(FLAGS_auth_token, absl::Seconds(10));
          return probe_stub->GetRunStatus(ctx.get(), req, &resp);
        },
        &status_ms, &status_codes);
    timed(
        [&] {
          v1::HeartbeatRequest req;
          req.set_worker_id(ids[prober]);
          req.set_session(sessions[prober]);
          v1::HeartbeatResponse resp;
          auto ctx = MakeClientContext(FLAGS_auth_token, absl::Seconds(10));
          return probe_stub->Heartbeat(ctx.get(), req, &resp);
        },
        &heartbeat_ms, &heartbeat_codes);
    std::this_thread::sleep_until(probe_start + std::chrono::milliseconds(5 * (i + 1)));
  }
  std::this_thread::sleep_until(probe_start +
                                std::chrono::milliseconds(FLAGS_sample_after_ms));
  const ProcSample during_polls = Sample(FLAGS_learner_pid);
  // When each poll was answered, counted from the start of the first: all near
  // poll_wait_ms when the learner held them all at once.
  std::map<std::string, int> poll_codes;
  std::vector<double> poll_answered_ms;
  for (int done = 0; done < polls; ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    ++poll_codes[CodeName(calls[reinterpret_cast<intptr_t>(tag)].status)];
    poll_answered_ms.push_back(std::chrono::duration<double, std::milli>(
                                   std::chrono::steady_clock::now() - polls_start)
                                   .count());
  }
  cq.Shutdown();
  const ProcSample after_polls = Sample(FLAGS_learner_pid);

  std::printf(
      "{\"registrations\": %d, \"register_codes\": %s, \"polls\": %d, \"poll_codes\": "
      "%s,\n"
      " \"learner_idle\": %s, \"after_registrations\": %s, \"during_polls\": %s, "
      "\"after_polls\": %s,\n"
      " \"get_run_status_during_polls\": %s, \"heartbeat_during_polls\": %s,\n"
      " \"polls_answered_after\": %s}\n",
      FLAGS_registrations, Json(register_codes).c_str(), polls, Json(poll_codes).c_str(),
      Json(idle).c_str(), Json(after_registrations).c_str(), Json(during_polls).c_str(),
      Json(after_polls).c_str(), LatencyJson(status_ms, status_codes).c_str(),
      LatencyJson(heartbeat_ms, heartbeat_codes).c_str(),
      LatencyJson(poll_answered_ms, poll_codes).c_str());
  return 0;
}

}  // namespace
}  // namespace duet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return duet::Main();
}
