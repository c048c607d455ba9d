#include "common/worker_main.h"

#include <unistd.h>

#include <thread>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/health_server.h"
#include "common/rpc_util.h"
#include "common/signals.h"

DEFINE_string(learner, "127.0.0.1:50051", "address of the learner (the only address a worker needs)");
DEFINE_string(model, "out/base/model", "model folder with the base weights and duet.json");
DEFINE_string(auth_token, "", "shared token sent with every RPC (or use --auth_token_file / $DUET_AUTH_TOKEN)");
DEFINE_string(auth_token_file, "", "file holding the shared token");
DEFINE_string(tls_ca, "", "PEM CA to verify the learner's certificate (enables TLS)");
DEFINE_string(tls_cert, "", "PEM client certificate for mutual TLS");
DEFINE_string(tls_key, "", "PEM client key for mutual TLS");
DEFINE_string(tls_server_name, "", "name to verify in the learner's certificate (default: host of --learner)");
DEFINE_int32(capacity, 256, "rows decoded or scored per batch");
DEFINE_int32(threads, 1, "intra-op threads for LibTorch");
DEFINE_string(health_address, "127.0.0.1:0", "where to serve grpc.health.v1 (empty: off)");
DEFINE_string(name, "", "worker name in logs and status (default host:pid)");

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

int WorkerMain(int argc, char** argv, v1::Role role, const char* usage, HandlerFactory make_handler) {
  gflags::SetUsageMessage(usage);
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  google::InitGoogleLogging(argv[0]);
  std::unique_ptr<WorkerRuntime> runtime;
  absl::Mutex mu;  // guards `runtime` against the signal thread
  bool stop_requested = false;
  SignalWatcher signals([&](int signo) {
    LOG(INFO) << "signal " << signo << ": finishing the current item, then exiting";
    absl::MutexLock lock(&mu);
    stop_requested = true;
    if (runtime) runtime->RequestStop();
  });
  at::set_num_threads(std::max(1, FLAGS_threads));
  auto token = ResolveAuthToken(FLAGS_auth_token, FLAGS_auth_token_file);
  if (!token.ok()) {
    LOG(ERROR) << token.status();
    return 1;
  }
  auto layout = ReadTokenLayout(FLAGS_model);
  if (!layout.ok()) {
    LOG(ERROR) << layout.status();
    return 1;
  }
  auto model = Transformer::Load(FLAGS_model);
  if (!model.ok()) {
    LOG(ERROR) << model.status();
    return 1;
  }
  TransportSecurity sec{FLAGS_tls_cert, FLAGS_tls_key, FLAGS_tls_ca, FLAGS_tls_server_name};
  auto creds = MakeChannelCredentials(sec);
  if (!creds.ok()) {
    LOG(ERROR) << creds.status();
    return 1;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!FLAGS_tls_server_name.empty()) args.SetSslTargetNameOverride(FLAGS_tls_server_name);
  auto channel = grpc::CreateCustomChannel(FLAGS_learner, *creds, args);
  WorkerOptions options;
  options.role = role;
  options.capacity = FLAGS_capacity;
  options.auth_token = *token;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  options.name = FLAGS_name.empty() ? absl::StrCat(host, ":", getpid()) : FLAGS_name;
  {
    absl::MutexLock lock(&mu);
    runtime = std::make_unique<WorkerRuntime>(v1::Coordinator::NewStub(channel), std::move(*model), options,
                                              make_handler(*layout, FLAGS_capacity));
    if (stop_requested) runtime->RequestStop();
  }
  WorkerStatusService status_service(runtime.get(), role);
  std::unique_ptr<grpc::Server> health;
  if (!FLAGS_health_address.empty()) {
    int port = 0;
    auto h = StartHealthServer(FLAGS_health_address, &status_service, &port);
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
