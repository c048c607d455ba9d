#include "worker/worker_main.h"

#include <unistd.h>

#include <thread>

#include <glog/logging.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "base/signals.h"
#include "rpc/health_server.h"
#include "rpc/rpc_util.h"

namespace duet {
namespace {

// duet.v1.Worker: the version and checksum the worker holds (unauthenticated, read-only,
// served on the health address).
class WorkerStatusService final : public v1::Worker::Service {
 public:
  WorkerStatusService(const WorkerRuntime* runtime, v1::Role role) : runtime_(runtime), role_(role) {}
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

}  // namespace

int WorkerMain(v1::Role role, const WorkerMainOptions& flags, HandlerFactory make_handler) {
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
  TransportSecurity sec{flags.tls_cert, flags.tls_key, flags.tls_ca, flags.tls_server_name};
  auto creds = MakeChannelCredentials(sec);
  if (!creds.ok()) {
    LOG(ERROR) << creds.status();
    return 1;
  }
  auto channel = MakeChannel(flags.learner, *creds, flags.tls_server_name);
  WorkerOptions options;
  options.role = role;
  options.capacity = flags.capacity;
  options.auth_token = *token;
  options.collective_address = flags.collective_address;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  options.name = flags.name.empty() ? absl::StrCat(host, ":", getpid()) : flags.name;
  {
    absl::MutexLock lock(&mu);
    runtime = std::make_unique<WorkerRuntime>(v1::Coordinator::NewStub(channel), std::move(*model), options,
                                              make_handler(*layout, flags.capacity));
    if (stop_requested) runtime->RequestStop();
  }
  WorkerStatusService status_service(runtime.get(), role);
  std::unique_ptr<grpc::Server> health;
  if (!flags.health_address.empty()) {
    int port = 0;
    auto h = StartHealthServer(flags.health_address, &status_service, &port);
    if (!h.ok()) {
      LOG(ERROR) << h.status();
      return 1;
    }
    health = std::move(*h);
    LOG(INFO) << "health and status service on port " << port;
  }
  absl::Status s = runtime->Run();
  if (health) health->Shutdown();
  if (!s.ok()) {
    LOG(ERROR) << "worker failed: " << s;
    return 1;
  }
  LOG(INFO) << "worker exiting cleanly at policy version " << runtime->version();
  return 0;
}

}  // namespace duet
