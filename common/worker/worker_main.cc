#include "common/worker/worker_main.h"

#include <glog/logging.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/clock.h"
#include "common/base/file_util.h"
#include "common/base/signals.h"
#include "common/metrics/catalogue.h"
#include "common/metrics/metrics_server.h"
#include "common/rpc/health_server.h"
#include "common/rpc/rpc_metrics.h"
#include "common/rpc/rpc_util.h"

namespace duet {
namespace {

// duet.v1.Worker: the version and checksum the worker holds (unauthenticated, read-only,
// served on the health address).
class WorkerStatusService final : public v1::Worker::Service {
 public:
  WorkerStatusService(const WorkerRuntime* runtime, v1::Role role)
      : runtime_(runtime), role_(role) {}
  grpc::Status GetWorkerStatus(grpc::ServerContext*, const v1::GetWorkerStatusRequest*,
                               v1::WorkerStatus* resp) override {
    resp->set_worker_id(runtime_->worker_id());
    resp->set_role(role_);
    resp->set_policy_version(runtime_->version());
    resp->set_weights_checksum(runtime_->checksum());
    return grpc::Status::OK;
  }

 private:
  const WorkerRuntime* runtime_;
  v1::Role role_;
};

// The worker's metrics (docs/metrics.md): process, RPCs it makes, weights it receives,
// items it finishes and the role's own (rollout: samples, tokens, batches, policy lag;
// scorer: pairs, batches). A "batch" is one item: the role decodes or scores an item's
// rows in batches of --capacity, and items are sized to fit one. Recording reads the
// item and its result only.
class WorkerTelemetry {
 public:
  WorkerTelemetry(v1::Role role, int64_t weight_bytes)
      : rollout_role_(role == v1::ROLE_ROLLOUT),
        weight_bytes_(weight_bytes),
        registry_(std::make_shared<prometheus::Registry>()),
        rpc_(*registry_, metrics::RpcMetrics::Side::kClient,
             {"Register", "PullWork", "CompleteWork", "FetchWeights", "Heartbeat",
              "Deregister"}),
        worker_(*registry_),
        weights_(*registry_) {
    metrics::RegisterProcessMetrics(*registry_, rollout_role_ ? "rollout" : "scorer");
    if (rollout_role_) {
      rollout_ = std::make_unique<metrics::RolloutMetrics>(*registry_);
    } else {
      scorer_ = std::make_unique<metrics::ScorerMetrics>(*registry_);
    }
  }

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  metrics::RpcMetrics* rpc() { return &rpc_; }

  // Every finished client call (the channel's observer).
  void OnCall(std::string_view method, int code, double seconds) {
    if (method == "PullWork") worker_.idle_seconds->Increment(seconds);
    if (method == "FetchWeights") {
      weights_.BootstrapFetches(code).Increment();
      if (code == 0)
        weights_.bootstrap_bytes->Increment(static_cast<double>(weight_bytes_));
    }
  }

  // Every finished item (WorkerOptions::on_item).
  void OnItem(const v1::WorkItem& item, const v1::CompleteWorkRequest& result,
              const absl::Status& handled, double seconds, int64_t version) {
    worker_.Items(static_cast<int>(handled.code())).Increment();
    {
      absl::MutexLock lock(&mu_);
      busy_.push_back({std::chrono::steady_clock::now(), seconds});
    }
    weights_.version->Set(static_cast<double>(version));
    if (item.has_sync()) {
      weights_.broadcasts->Increment();
      if (!handled.ok()) {
        weights_.BroadcastFailures(static_cast<int>(handled.code())).Increment();
        return;
      }
      weights_.broadcast_seconds->Observe(seconds);
      weights_.broadcast_size_bytes->Observe(static_cast<double>(weight_bytes_));
      return;
    }
    if (!handled.ok()) return;
    if (item.has_rollout() && rollout_) {
      const bool gen = item.rollout().task() == v1::TASK_GENERATION;
      int64_t samples = 0, tokens = 0;
      for (const auto& g : result.rollout().groups()) {
        for (const auto& s : g.samples()) {
          ++samples;
          tokens += s.output().ids_size();
        }
      }
      const int64_t rows = item.rollout().inputs_size() * item.rollout().k() *
                           (item.rollout().use_cfg() ? 2 : 1);
      rollout_->samples.Get(gen).Increment(static_cast<double>(samples));
      rollout_->tokens.Get(gen).Increment(static_cast<double>(tokens));
      rollout_->batch_seconds.Get(gen).Observe(seconds);
      rollout_->batch_rows.Get(gen).Observe(static_cast<double>(rows));
      rollout_->policy_lag->Observe(
          static_cast<double>(std::max<int64_t>(0, item.policy_version() - version)));
    }
    if (item.has_score() && scorer_) {
      int64_t pairs[2] = {0, 0};  // generation, understanding
      for (const auto& q : item.score().queries())
        ++pairs[q.task() == v1::TASK_GENERATION ? 0 : 1];
      for (bool gen : {true, false}) {
        const int64_t n = pairs[gen ? 0 : 1];
        if (n == 0) continue;
        scorer_->pairs.Get(gen).Increment(static_cast<double>(n));
        scorer_->batch_seconds.Get(gen).Observe(seconds);
        scorer_->batch_rows.Get(gen).Observe(static_cast<double>(n));
      }
    }
  }

  // At each scrape: the fraction of the last 60 s spent on items.
  void Refresh() {
    const auto now = std::chrono::steady_clock::now();
    const double window = 60;
    double busy = 0;
    absl::MutexLock lock(&mu_);
    while (!busy_.empty() &&
           std::chrono::duration<double>(now - busy_.front().first).count() > window) {
      busy_.pop_front();
    }
    for (const auto& [end, seconds] : busy_) {
      const double age = std::chrono::duration<double>(now - end).count();
      busy += std::min(seconds, window - age);
    }
    worker_.busy_ratio->Set(std::clamp(busy / window, 0.0, 1.0));
  }

 private:
  const bool rollout_role_;
  const int64_t weight_bytes_;
  std::shared_ptr<prometheus::Registry> registry_;
  metrics::RpcMetrics rpc_;
  metrics::WorkerMetrics worker_;
  metrics::WeightsMetrics weights_;
  std::unique_ptr<metrics::RolloutMetrics> rollout_;
  std::unique_ptr<metrics::ScorerMetrics> scorer_;
  absl::Mutex mu_;  // guards busy_ (Run() thread adds, scrapes read)
  std::deque<std::pair<std::chrono::steady_clock::time_point, double>> busy_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

int WorkerMain(v1::Role role, const WorkerMainOptions& flags,
               HandlerFactory make_handler) {
  std::unique_ptr<WorkerRuntime> runtime;
  absl::Mutex mu;  // guards `runtime` against the signal thread
  bool stop_requested = false;
  SignalWatcher signals([&](int signo) {
    LOG(INFO) << "signal " << signo << ": finishing the current item, then exiting";
    absl::MutexLock lock(&mu);
    stop_requested = true;
    if (runtime) runtime->RequestStop();
  });
  at::set_num_threads(std::max(1, flags.threads));
  auto token = ResolveAuthToken(flags.auth_token, flags.auth_token_file);
  if (!token.ok()) {
    LOG(ERROR) << token.status();
    return 1;
  }
  auto layout = ReadTokenLayout(flags.model);
  if (!layout.ok()) {
    LOG(ERROR) << layout.status();
    return 1;
  }
  auto model = Transformer::Load(flags.model);
  if (!model.ok()) {
    LOG(ERROR) << model.status();
    return 1;
  }
  TransportSecurity sec{flags.tls_cert, flags.tls_key, flags.tls_ca,
                        flags.tls_server_name};
  auto creds = MakeChannelCredentials(sec);
  if (!creds.ok()) {
    LOG(ERROR) << creds.status();
    return 1;
  }
  int64_t weight_bytes = 0;
  for (const torch::Tensor& p : model->parameters())
    weight_bytes += p.numel() * p.element_size();
  WorkerTelemetry telemetry(role, weight_bytes);
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (!flags.metrics_address.empty()) {
    auto m = metrics::MetricsServer::Start(flags.metrics_address, telemetry.registry());
    if (!m.ok()) {
      LOG(ERROR) << m.status();
      return 1;
    }
    metrics_server = std::move(*m);
    metrics_server->AddRefreshHook([&telemetry] { telemetry.Refresh(); });
    LOG(INFO) << "metrics on port " << metrics_server->port();
    if (!flags.metrics_port_file.empty()) {
      if (absl::Status s = metrics_server->WritePortFile(flags.metrics_port_file);
          !s.ok()) {
        LOG(ERROR) << s;
        return 1;
      }
    }
  } else if (!flags.metrics_port_file.empty()) {
    LOG(ERROR) << "--metrics_port_file needs --metrics_address";
    return 1;
  }
  auto channel =
      MakeMeteredChannel(flags.learner, *creds, flags.tls_server_name, telemetry.rpc(),
                         [&telemetry](std::string_view m, int code, double s) {
                           telemetry.OnCall(m, code, s);
                         });
  WorkerOptions options;
  options.role = role;
  options.capacity = flags.capacity;
  options.auth_token = *token;
  options.collective_address = flags.collective_address;
  options.security = sec;
  options.collective_timeout = absl::Seconds(std::max(1, flags.collective_timeout_s));
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  options.name = flags.name.empty() ? absl::StrCat(host, ":", getpid()) : flags.name;
  options.on_item = [&telemetry](
                        const v1::WorkItem& item, const v1::CompleteWorkRequest& result,
                        const absl::Status& handled, double seconds, int64_t version) {
    telemetry.OnItem(item, result, handled, seconds, version);
  };
  // The probes' reporter exists once the health server does (below), before Run().
  HealthReporter* reporter = nullptr;
  options.on_progress = [&reporter](bool in_run) {
    if (reporter == nullptr) return;
    reporter->Beat();
    reporter->SetReady(in_run);
  };
  RoleHandlers handlers = make_handler(*layout, flags.capacity);
  options.on_register = std::move(handlers.on_register);
  {
    absl::MutexLock lock(&mu);
    runtime = std::make_unique<WorkerRuntime>(v1::Coordinator::NewStub(channel),
                                              std::move(*model), options,
                                              std::move(handlers.handler));
    if (stop_requested) runtime->RequestStop();
  }
  WorkerStatusService status_service(runtime.get(), role);
  std::unique_ptr<grpc::Server> health;
  std::unique_ptr<HealthReporter> probes;  // destroyed before `health`
  if (!flags.health_address.empty()) {
    int port = 0;
    auto h = StartHealthServer(flags.health_address, &status_service, &port);
    if (!h.ok()) {
      LOG(ERROR) << h.status();
      return 1;
    }
    health = std::move(*h);
    probes = std::make_unique<HealthReporter>(health.get(), RealClock(),
                                              absl::Seconds(flags.stall_timeout_s));
    reporter = probes.get();
    LOG(INFO) << "health and status service on port " << port << " (readiness: service "
              << kReadinessService << ")";
  }
  absl::Status s = runtime->Run();
  reporter = nullptr;
  probes.reset();
  if (health) health->Shutdown();
  if (!s.ok()) {
    LOG(ERROR) << "worker failed: " << s;
    return 1;
  }
  LOG(INFO) << "worker exiting cleanly at policy version " << runtime->version();
  return 0;
}

}  // namespace duet
