#include "common/rpc/health_server.h"

#include <glog/logging.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/rpc/rpc_util.h"
#include "duet/v1/coordinator.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace duet {

absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthServer(
    const std::string& address, grpc::Service* service, int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve health checks on ", address));
  }
  return server;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(
    const std::string& address, int* port) {
  // gRPC's synchronous server needs one service with a synchronous method: an empty
  // duet.v1.Worker (every method UNIMPLEMENTED), shared by every such server.
  static auto* placeholder = new v1::Worker::Service();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  builder.RegisterService(placeholder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve health checks on ", address));
  }
  return server;
}

HealthReporter::HealthReporter(grpc::Server* server, Clock* clock,
                               absl::Duration stall_after)
    : health_(server->GetHealthCheckService()), clock_(clock), stall_after_(stall_after) {
  {
    absl::MutexLock lock(&mu_);
    last_beat_ = clock_->Now();
    PublishLocked();
  }
  watchdog_ = std::thread([this] { Watch(); });
}

HealthReporter::~HealthReporter() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  watchdog_.join();
}

void HealthReporter::Beat() {
  absl::MutexLock lock(&mu_);
  last_beat_ = clock_->Now();
  PublishLocked();
}

void HealthReporter::SetReady(bool ready) {
  absl::MutexLock lock(&mu_);
  ready_ = ready;
  PublishLocked();
}

bool HealthReporter::live() const {
  absl::MutexLock lock(&mu_);
  return live_;
}

bool HealthReporter::ready() const {
  absl::MutexLock lock(&mu_);
  return ready_;
}

void HealthReporter::PublishLocked() {
  live_ =
      stall_after_ <= absl::ZeroDuration() || clock_->Now() - last_beat_ <= stall_after_;
  if (health_ == nullptr) return;
  health_->SetServingStatus("", live_);
  health_->SetServingStatus(kReadinessService, live_ && ready_);
}

void HealthReporter::Watch() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const bool was_live = live_;
    PublishLocked();
    if (was_live && !live_) {
      LOG(ERROR) << "no progress for " << absl::FormatDuration(clock_->Now() - last_beat_)
                 << " (stall_timeout " << absl::FormatDuration(stall_after_)
                 << "): liveness says NOT_SERVING";
    }
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stop_),
                              clock_->Now() + absl::Seconds(1));
  }
}

absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service,
                                        absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  DUET_RETURN_IF_ERROR(FromGrpcStatus(stub->Check(&ctx, req, &resp)));
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
}

}  // namespace duet
