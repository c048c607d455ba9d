#include "common/worker/worker_runtime.h"

#include <glog/logging.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/grpc_rendezvous.h"
#include "common/weights/weight_stream.h"

namespace duet {

WorkerRuntime::WorkerRuntime(std::shared_ptr<v1::Coordinator::StubInterface> stub,
                             Transformer model, WorkerOptions options,
                             WorkHandler handler)
    : stub_(std::move(stub)),
      options_(std::move(options)),
      handler_(std::move(handler)),
      model_(std::move(model)) {
  absl::MutexLock lock(&mu_);
  checksum_ = WeightChecksum(model_.parameters());
}

WorkerRuntime::~WorkerRuntime() = default;

int64_t WorkerRuntime::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

std::string WorkerRuntime::worker_id() const {
  absl::MutexLock lock(&mu_);
  return public_worker_id_;
}

uint64_t WorkerRuntime::checksum() const {
  absl::MutexLock lock(&mu_);
  return checksum_;
}

absl::Status WorkerRuntime::Register() {
  v1::RegisterRequest req;
  req.set_role(options_.role);
  req.set_name(options_.name);
  req.set_capacity(options_.capacity);
  req.set_pid(getpid());
  v1::RegisterResponse resp;
  absl::Status last;
  int same_problem = 0;
  ConnectionProblem::Kind previous = ConnectionProblem::kNone;
  for (int attempt = 0; attempt < options_.register_attempts && !stop_.load();
       ++attempt) {
    auto ctx = MakeClientContext(options_.auth_token, options_.rpc_timeout);
    last = FromGrpcStatus(stub_->Register(ctx.get(), req, &resp));
    if (last.ok()) break;
    if (absl::IsResourceExhausted(last)) {  // the learner's registry is full for now
      LOG_EVERY_N(WARNING, 10) << "the learner refused to register us for now: " << last;
      BackOff(attempt, *ctx);
      continue;
    }
    // The learner may still be starting: only Unavailable is worth waiting for.
    if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last) &&
        !absl::IsUnknown(last))
      return last;
    const ConnectionProblem problem = DiagnoseConnection(last, options_.security);
    same_problem = problem.kind == previous ? same_problem + 1 : 1;
    previous = problem.kind;
    // A TLS mismatch or a server that hangs up does not fix itself: say so within
    // seconds.
    if ((problem.kind == ConnectionProblem::kTls ||
         problem.kind == ConnectionProblem::kClosed) &&
        same_problem >= 3) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot register with the learner: ", problem.hint, " (", last.message(), ")"));
    }
    if (attempt % 10 == 0) {
      LOG(WARNING) << "cannot register with the learner yet (attempt " << attempt + 1
                   << " of " << options_.register_attempts << "): " << last
                   << (problem.hint.empty() ? "" : absl::StrCat("; ", problem.hint));
    }
    options_.clock->SleepFor(absl::Milliseconds(500));
  }
  if (!last.ok()) {
    const ConnectionProblem problem = DiagnoseConnection(last, options_.security);
    return absl::Status(last.code(),
                        absl::StrCat("cannot register with the learner: ", last.message(),
                                     problem.hint.empty() ? "" : "; " + problem.hint));
  }
  worker_id_ = resp.worker_id();
  session_ = resp.session();
  polled_ = false;
  {
    absl::MutexLock lock(&mu_);
    public_worker_id_ = worker_id_;
  }
  frozen_ = resp.frozen_scorer() && options_.role == v1::ROLE_SCORER;
  if (options_.on_register) DUET_RETURN_IF_ERROR(options_.on_register(resp));
  LOG(INFO) << "registered as " << worker_id_ << " (run " << resp.run_id() << ")";
  registered_at_ = absl::Now();
  // A collective seat comes with the next weight sync's broadcast epoch.
  LeaveCollective();
  // Heartbeat well inside the learner's lease, or a long item looks like a death.
  heartbeat_every_ = options_.heartbeat_every;
  if (resp.lease_ms() > 0)
    heartbeat_every_ =
        std::min(heartbeat_every_, absl::Milliseconds(resp.lease_ms()) / 3);
  store_host_ = resp.store_host();
  rendezvous_over_grpc_ = resp.rendezvous_over_grpc();
  store_port_ = resp.store_port();
  collective_backend_ = resp.collective_backend();
  if ((resp.policy_version() > 0 || resp.policy_version() != version()) && !frozen_) {
    // Training is under way (or a restarted learner is back at another version than the
    // weights we hold): catch up over gRPC before taking work.
    int64_t v = 0;
    uint64_t sum = 0;
    DUET_RETURN_IF_ERROR(FetchWeightsOverGrpc(&v, &sum));
  }
  return absl::OkStatus();
}

absl::Status WorkerRuntime::FetchWeightsOverGrpc(int64_t* version, uint64_t* checksum) {
  auto ctx = MakeClientContext(options_.auth_token, options_.collective_timeout);
  v1::FetchWeightsRequest req;
  auto reader = stub_->FetchWeights(ctx.get(), req);
  WeightStreamAssembler assembler;
  v1::WeightChunk chunk;
  absl::Status added;
  while (reader->Read(&chunk)) {
    // Keep reading after a bad chunk so that Finish() below ends the call cleanly.
    if (added.ok()) added = assembler.Add(chunk);
  }
  DUET_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  DUET_RETURN_IF_ERROR(added);
  DUET_ASSIGN_OR_RETURN(torch::Tensor flat, assembler.Finish(version, checksum));
  absl::MutexLock lock(&mu_);
  if (frozen_)
    return absl::OkStatus();  // verified, but a frozen scorer keeps its weights
  DUET_RETURN_IF_ERROR(UnflattenInto(flat, model_.parameters()));
  version_ = *version;
  checksum_ = *checksum;
  LOG(INFO) << worker_id_ << ": fetched weights v" << version_ << " over gRPC";
  return absl::OkStatus();
}

void WorkerRuntime::LeaveCollective() {
  receiver_.reset();
  collective_.reset();
  epoch_ = -1;
}

absl::Status WorkerRuntime::JoinEpoch(const v1::WeightSync& sync) {
  if (sync.epoch() == epoch_ && receiver_ != nullptr) return absl::OkStatus();
  LeaveCollective();
  CollectiveOptions c;
  c.backend = collective_backend_;
  c.store_host = store_host_;
  c.store_port = store_port_;
  c.rank = sync.rank();
  c.world_size = sync.world_size();
  c.group_prefix = sync.store_prefix();
  if (rendezvous_over_grpc_) {  // the learner's store, behind the token and our session
    c.rendezvous = std::make_shared<GrpcRendezvousClient>(
        stub_, options_.auth_token, worker_id_, session_, options_.rpc_timeout);
  }
  c.device_hostname = options_.collective_address;
  c.timeout = options_.collective_timeout;
  DUET_ASSIGN_OR_RETURN(collective_, CreateCollective(c));
  // Broadcast weights count only with the keyed checksum of this run's secret and epoch.
  receiver_ = std::make_unique<WeightReceiver>(
      collective_.get(), /*root=*/0,
      WeightMacKey::Derive(options_.auth_token, sync.store_prefix()));
  epoch_ = sync.epoch();
  LOG(INFO) << worker_id_ << ": joined broadcast epoch " << epoch_ << " as rank "
            << c.rank << " of " << c.world_size;
  return absl::OkStatus();
}

absl::Status WorkerRuntime::HandleSync(const v1::WorkItem& item,
                                       v1::CompleteWorkRequest* result) {
  const v1::WeightSync& sync = item.sync();
  int64_t version = 0;
  uint64_t checksum = 0;
  if (sync.fetch_over_grpc()) {
    DUET_RETURN_IF_ERROR(FetchWeightsOverGrpc(&version, &checksum));
  } else {
    std::vector<torch::Tensor> shape_like;
    {
      absl::ReaderMutexLock lock(&mu_);
      shape_like = model_.parameters();
    }
    // A failed rendezvous or broadcast ends this epoch for us: the learner falls back to
    // the gRPC stream and re-forms the group at the next sync.
    absl::Status joined = JoinEpoch(sync);
    absl::StatusOr<int64_t> received = joined.ok()
                                           ? receiver_->Receive(shape_like, &staging_)
                                           : absl::StatusOr<int64_t>(joined);
    if (!received.ok()) {
      LeaveCollective();
      return received.status();
    }
    version = *received;
    checksum = receiver_->checksum();
    if (version != sync.version() || checksum != sync.checksum()) {
      return absl::DataLossError(absl::StrCat(
          "broadcast delivered v", version, " checksum ", checksum,
          " but the learner announced v", sync.version(), " checksum ", sync.checksum()));
    }
    absl::MutexLock lock(&mu_);
    if (!frozen_) {
      WeightReceiver::ApplyStaging(staging_, model_.parameters());
      version_ = version;
      checksum_ = checksum;
    }
  }
  result->mutable_sync()->set_version(version);
  result->mutable_sync()->set_checksum(checksum);
  return absl::OkStatus();
}

void WorkerRuntime::BackOff(int attempt, const grpc::ClientContext& refused) {
  options_.clock->SleepFor(BackoffDelay(attempt, options_.backoff_base,
                                        options_.backoff_cap, RetryAfter(refused),
                                        absl::Uniform(jitter_, 0.0, 1.0)));
}

absl::Status WorkerRuntime::SendResult(const v1::CompleteWorkRequest& result) {
  absl::Status s;
  for (int attempt = 0; attempt < options_.complete_attempts; ++attempt) {
    v1::CompleteWorkResponse ack;
    auto ctx = MakeClientContext(options_.auth_token, options_.rpc_timeout);
    s = FromGrpcStatus(stub_->CompleteWork(ctx.get(), result, &ack));
    // Only a refusal for load is worth repeating: the learner did not look at the result.
    if (!absl::IsResourceExhausted(s)) return s;
    BackOff(attempt, *ctx);
  }
  return s;
}

absl::Status WorkerRuntime::Run() {
  auto progress = [this](bool in_run) {
    if (options_.on_progress) options_.on_progress(in_run);
  };
  DUET_RETURN_IF_ERROR(Register());
  progress(true);
  int refused_pulls = 0;  // consecutive PullWork refusals, for the backoff
  int unreachable = 0;    // consecutive calls that found no learner
  bool got_first_item = false;
  while (!stop_.load()) {
    v1::PullWorkRequest req;
    req.set_worker_id(worker_id_);
    req.set_session(session_);
    req.set_wait_ms(options_.pull_wait_ms);
    v1::PullWorkResponse resp;
    auto ctx = MakeClientContext(
        options_.auth_token,
        options_.rpc_timeout + absl::Milliseconds(options_.pull_wait_ms));
    absl::Status s = FromGrpcStatus(stub_->PullWork(ctx.get(), req, &resp));
    // In the run unless the learner is unreachable or no longer knows us.
    progress(!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s) &&
             !absl::IsNotFound(s));
    if (absl::IsResourceExhausted(s)) {  // backpressure: the learner is at its limits
      VLOG(1) << worker_id_ << ": " << s;
      BackOff(refused_pulls++, *ctx);
      continue;
    }
    refused_pulls = 0;
    if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) {
      // The learner is gone or restarting; it says shutdown when the run ends normally.
      LOG_EVERY_N(WARNING, 10) << worker_id_ << ": learner unavailable: " << s;
      options_.clock->SleepFor(BackoffDelay(unreachable++, absl::Milliseconds(200),
                                            absl::Seconds(2), absl::ZeroDuration(),
                                            absl::Uniform(jitter_, 0.5, 1.0)));
      continue;
    }
    unreachable = 0;
    if (absl::IsNotFound(s)) {
      // The learner does not know us: we were lost (silent past the lease) or the learner
      // restarted. Register again, as a new worker with the current weights.
      LOG(WARNING) << worker_id_ << ": " << s.message() << "; registering again";
      DUET_RETURN_IF_ERROR(Register());
      progress(true);
      continue;
    }
    DUET_RETURN_IF_ERROR(s);
    if (!polled_) {  // the learner now counts us for its broadcast epochs
      polled_ = true;
      LOG(INFO) << worker_id_ << ": first PullWork answered";
    }
    if (resp.shutdown()) {
      LOG(INFO) << worker_id_ << ": the learner ended the run";
      progress(false);
      return absl::OkStatus();
    }
    if (!resp.has_item()) continue;
    if (!got_first_item) {  // operators (and tools/bench/run_elastic_bench.sh) time joins
                            // by it
      got_first_item = true;
      LOG(INFO) << worker_id_ << ": first item " << resp.item().item_id() << " "
                << absl::FormatDuration(absl::Now() - registered_at_)
                << " after registering";
    }
    const v1::WorkItem& item = resp.item();
    v1::CompleteWorkRequest result;
    result.set_worker_id(worker_id_);
    result.set_session(session_);
    result.set_item_id(item.item_id());
    absl::Status handled;
    const auto item_start = std::chrono::steady_clock::now();
    // Renew the lease while computing, so that a long item does not look like a death.
    absl::Notification done;
    std::thread heartbeat([this, &done] { HeartbeatUntil(&done); });
    if (item.has_sync()) {
      handled = HandleSync(item, &result);
      result.set_policy_version(version());
    } else {
      if (!frozen_ && item.policy_version() > version()) {
        // We hold older weights than the item asks for (we registered before the learner
        // moved on and got no sync yet): catch up over gRPC first.
        int64_t v = 0;
        uint64_t sum = 0;
        if (absl::Status caught = FetchWeightsOverGrpc(&v, &sum); !caught.ok()) {
          LOG(WARNING) << worker_id_ << ": could not catch up to v"
                       << item.policy_version() << ": " << caught;
        }
      }
      absl::ReaderMutexLock lock(&mu_);
      result.set_policy_version(version_);
      if (!frozen_ && item.policy_version() > version_) {
        // The learner expects weights this worker does not hold yet (a missed sync). An
        // older item (asynchronous mode: a sync arrived while it waited) is computed with
        // the weights held, and the result says which version that is.
        handled = absl::FailedPreconditionError(
            absl::StrCat("item ", item.item_id(), " expects policy version ",
                         item.policy_version(), ", this worker holds ", version_));
      } else {
        try {
          handled = handler_(model_, version_, item, &result);
        } catch (const std::exception& e) {
          handled = absl::InternalError(e.what());
        }
      }
    }
    done.Notify();
    heartbeat.join();
    if (!handled.ok()) {
      LOG(WARNING) << worker_id_ << ": item " << item.item_id() << " failed: " << handled;
      result.mutable_error()->set_code(static_cast<int>(handled.code()));
      result.mutable_error()->set_message(std::string(handled.message()));
    }
    if (options_.on_item) {
      options_.on_item(
          item, result, handled,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - item_start)
              .count(),
          version());
    }
    const absl::Status sent = SendResult(result);
    if (absl::IsNotFound(sent)) {
      // Refused: the item is no longer ours (we were lost and it went to another worker,
      // or nobody waits for it any more). Pulling again tells which: NOT_FOUND there
      // means we must register again.
      LOG(WARNING) << worker_id_ << ": result for " << item.item_id()
                   << " refused: " << sent.message();
      continue;
    }
    if (absl::IsUnavailable(sent) || absl::IsDeadlineExceeded(sent)) {
      LOG(WARNING) << worker_id_ << ": result for " << item.item_id()
                   << " not delivered: " << sent;
      continue;  // the learner is gone; it re-issues the item when it comes back
    }
    DUET_RETURN_IF_ERROR(sent);
  }
  // Stopped (SIGTERM): the current item is finished and delivered; free our seat now.
  progress(false);
  v1::DeregisterRequest leave;
  leave.set_worker_id(worker_id_);
  leave.set_session(session_);
  v1::DeregisterResponse left;
  auto ctx = MakeClientContext(options_.auth_token, absl::Seconds(5));
  const absl::Status s = FromGrpcStatus(stub_->Deregister(ctx.get(), leave, &left));
  LOG(INFO) << worker_id_ << (s.ok() ? ": deregistered" : ": could not deregister: ")
            << (s.ok() ? "" : s.ToString());
  return absl::OkStatus();
}

void WorkerRuntime::HeartbeatUntil(absl::Notification* done) {
  while (!done->WaitForNotificationWithTimeout(heartbeat_every_)) {
    v1::HeartbeatRequest req;
    req.set_worker_id(worker_id_);
    req.set_session(session_);
    v1::HeartbeatResponse resp;
    auto ctx = MakeClientContext(options_.auth_token, options_.rpc_timeout);
    const absl::Status s = FromGrpcStatus(stub_->Heartbeat(ctx.get(), req, &resp));
    if (!s.ok()) VLOG(1) << worker_id_ << ": heartbeat: " << s;
  }
}

}  // namespace duet
