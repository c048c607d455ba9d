// Backpressure on the learner's control plane, over real gRPC on 127.0.0.1: past the
// registry's size, past one waiting pull or one held item per worker, and past the
// server's thread limit, calls are RESOURCE_EXHAUSTED (with a retry hint where the
// service refuses) and change nothing; a real WorkerRuntime backs off and is served once
// the load is gone, instead of exiting.

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/model/test_models.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/weight_sync.h"
#include "common/worker/worker_runtime.h"
#include "learner/service/coordinator_service.h"
#include "learner/service/work_queue.h"

namespace duet {
namespace {

constexpr char kToken[] = "backpressure-token";
constexpr int kMaxWorkers = 16;
constexpr int kMaxThreads = 4;

TokenLayout Layout() { return testing::TinyTestLayout(); }
Transformer Model() {
  return *Transformer::Create(testing::TinyTestConfig(Layout().vocab_size()), 1);
}

std::string Trailer(const grpc::ClientContext& ctx, const std::string& key) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find(key);
  return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
}

v1::WorkItem ScoreItem() {
  v1::WorkItem item;
  auto* q = item.mutable_score()->add_queries();
  q->set_task(v1::TASK_GENERATION);
  q->mutable_input()->add_ids(8);
  for (int i = 0; i < 4; ++i) q->mutable_output()->add_ids(32 + i);
  return item;
}

// A scorer's handler that takes `delay`, then gives every query of its item `reward`.
WorkHandler FixedRewardScorer(float reward, absl::Duration delay = absl::ZeroDuration()) {
  return [reward, delay](const Transformer&, int64_t, const v1::WorkItem& item,
                         v1::CompleteWorkRequest* result) {
    absl::SleepFor(delay);
    for (int i = 0; i < item.score().queries_size(); ++i)
      result->mutable_score()->add_rewards(reward);
    return absl::OkStatus();
  };
}

class BackpressureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Transformer>(Model());
    SerializedWeights w = SerializeParameters(model_->parameters());
    snapshot_.Set(0, std::move(w));
    queue_ = std::make_unique<WorkQueue>("bp", RealClock(), kMaxWorkers, lease_);
    RequestLimits limits;
    limits.layout = Layout();
    limits.max_sequence_tokens = 32;
    limits.max_waiting_polls = max_waiting_polls_;
    RendezvousInfo rendezvous;
    rendezvous.run_id = "bp";
    service_ = std::make_unique<CoordinatorService>(queue_.get(), &snapshot_, rendezvous,
                                                    kToken, limits, nullptr);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    grpc::ResourceQuota quota("backpressure-test");
    quota.SetMaxThreads(kMaxThreads);  // what LearnerOptions::max_rpc_threads sets
    builder.SetResourceQuota(quota);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Coordinator::NewStub(channel_);
  }

  void TearDown() override {
    queue_->Close();
    server_->Shutdown();
  }

  grpc::Status Register(v1::Role role, std::string* id, grpc::ClientContext* ctx) {
    v1::RegisterRequest req;
    req.set_role(role);
    req.set_capacity(4);
    v1::RegisterResponse resp;
    ctx->AddMetadata(kAuthMetadataKey, std::string("Bearer ") + kToken);
    grpc::Status s = stub_->Register(ctx, req, &resp);
    *id = resp.worker_id();
    absl::MutexLock lock(&sessions_mu_);
    sessions_[resp.worker_id()] = resp.session();
    return s;
  }

  std::string RegisterOk(v1::Role role) {
    grpc::ClientContext ctx;
    std::string id;
    EXPECT_TRUE(Register(role, &id, &ctx).ok());
    return id;
  }

  grpc::Status Pull(const std::string& id, int wait_ms, grpc::ClientContext* ctx,
                    v1::PullWorkResponse* resp) {
    v1::PullWorkRequest req;
    req.set_worker_id(id);
    {
      absl::MutexLock lock(&sessions_mu_);
      req.set_session(sessions_[id]);
    }
    req.set_wait_ms(wait_ms);
    ctx->AddMetadata(kAuthMetadataKey, std::string("Bearer ") + kToken);
    return stub_->PullWork(ctx, req, resp);
  }

  absl::Duration lease_ =
      absl::ZeroDuration();        // the queue's; zero: workers never expire
  int32_t max_waiting_polls_ = 0;  // the service's bound; 0: none
  absl::Mutex
      sessions_mu_;  // guards sessions_: tests register and pull from several threads
  std::map<std::string, std::string> sessions_
      ABSL_GUARDED_BY(sessions_mu_);  // worker id -> session
  std::unique_ptr<Transformer> model_;
  WeightSnapshot snapshot_;
  std::unique_ptr<WorkQueue> queue_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(BackpressureTest, RegistrationsPastTheRegistryAreRefusedWithARetryHint) {
  for (int i = 0; i < kMaxWorkers; ++i) RegisterOk(v1::ROLE_ROLLOUT);
  grpc::ClientContext ctx;
  std::string id;
  const grpc::Status refused = Register(v1::ROLE_ROLLOUT, &id, &ctx);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_EQ(Trailer(ctx, kRetryAfterMetadataKey), "5000");
  EXPECT_EQ(RetryAfter(ctx), absl::Seconds(5));
  EXPECT_EQ(queue_->Workers().size(), static_cast<size_t>(kMaxWorkers));
}

TEST_F(BackpressureTest, AWorkerHoldingAnItemCannotPullAnotherAndTheItemStaysQueued) {
  const std::string worker = RegisterOk(v1::ROLE_SCORER);
  queue_->Submit(v1::ROLE_SCORER, ScoreItem());
  const std::string second = queue_->Submit(v1::ROLE_SCORER, ScoreItem());
  {
    grpc::ClientContext ctx;
    v1::PullWorkResponse resp;
    ASSERT_TRUE(Pull(worker, 0, &ctx, &resp).ok());
    ASSERT_TRUE(resp.has_item());
  }
  grpc::ClientContext ctx;
  v1::PullWorkResponse resp;
  const grpc::Status refused = Pull(worker, 0, &ctx, &resp);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_EQ(RetryAfter(ctx), absl::Milliseconds(200));
  EXPECT_FALSE(resp.has_item());
  // The second item is still there for another worker.
  const std::string other = RegisterOk(v1::ROLE_SCORER);
  grpc::ClientContext other_ctx;
  v1::PullWorkResponse other_resp;
  ASSERT_TRUE(Pull(other, 0, &other_ctx, &other_resp).ok());
  EXPECT_EQ(other_resp.item().item_id(), second);
}

// More long-polls than the server has threads (issue 18): a waiting PullWork holds no
// thread (callback API), so every one of them waits its time and none is refused, and a
// real worker that starts during the flood registers and completes its item. Before,
// the polls past the thread limit were refused with RESOURCE_EXHAUSTED.
TEST_F(BackpressureTest, MoreLongPollsThanThreadsAllWaitAndAWorkerIsServedDuringThem) {
  constexpr int kPollers = 12;
  std::vector<std::string> ids;
  for (int i = 0; i < kPollers; ++i) ids.push_back(RegisterOk(v1::ROLE_ROLLOUT));
  std::atomic<int> refused{0}, served{0};
  std::vector<std::thread> pollers;
  for (int i = 0; i < kPollers; ++i) {
    pollers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      v1::PullWorkResponse resp;
      const grpc::Status s = Pull(ids[i], 1500, &ctx, &resp);
      if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
      if (s.ok()) ++served;
    });
  }

  WorkerOptions options;
  options.role = v1::ROLE_SCORER;
  options.name = "patient-scorer";
  options.auth_token = kToken;
  options.pull_wait_ms = 200;
  options.backoff_base = absl::Milliseconds(50);
  options.backoff_cap = absl::Milliseconds(500);
  WorkerRuntime worker(v1::Coordinator::NewStub(channel_), Model(), options,
                       FixedRewardScorer(-1.5f));
  absl::Status run = absl::UnknownError("not run");
  std::thread worker_thread([&] { run = worker.Run(); });
  const std::string item = queue_->Submit(v1::ROLE_SCORER, ScoreItem());
  auto results = queue_->Await({item}, absl::Seconds(60));
  for (auto& t : pollers) t.join();
  queue_->Close();
  worker_thread.join();

  EXPECT_EQ(refused.load(), 0) << "long-polls were refused for want of threads";
  EXPECT_EQ(served.load(), kPollers);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].score().rewards(0), -1.5);
  EXPECT_TRUE(run.ok()) << "the worker gave up under load: " << run;
}

// Issue 17, finding 6: with RequestLimits::max_waiting_polls set, the polls past it are
// answered at once, and every control call (GetRunStatus, Heartbeat, CompleteWork) is
// answered during the flood. (When polls held handler threads, this bound kept them off
// the last 4; since issue 18 they hold none and duet-learner leaves it unset.)
class PollBoundTest : public BackpressureTest {
 protected:
  PollBoundTest() { max_waiting_polls_ = 2; }
};

TEST_F(PollBoundTest, ControlCallsAreAnsweredWhileLongPollsFloodTheServer) {
  constexpr int kPollers = 12;
  std::vector<std::string> ids;
  for (int i = 0; i < kPollers; ++i) ids.push_back(RegisterOk(v1::ROLE_ROLLOUT));
  const std::string scorer = RegisterOk(v1::ROLE_SCORER);
  const std::string item = queue_->Submit(v1::ROLE_SCORER, ScoreItem());
  {
    grpc::ClientContext ctx;
    v1::PullWorkResponse resp;
    ASSERT_TRUE(Pull(scorer, 0, &ctx, &resp).ok());
    ASSERT_EQ(resp.item().item_id(), item);
  }
  std::atomic<int> refused{0}, waited{0};
  std::vector<std::thread> pollers;
  for (int i = 0; i < kPollers; ++i) {
    pollers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      v1::PullWorkResponse resp;
      const grpc::Status s = Pull(ids[i], 3000, &ctx, &resp);
      if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++refused;
        // Refused by the bound (with its retry hint), or, while 12 calls arrive at once
        // at 4 threads, by gRPC's own thread quota before the handler ran.
        EXPECT_TRUE(!Trailer(ctx, "duet-retry-after-ms").empty() ||
                    s.error_message().find("Threadpool") != std::string::npos)
            << s.error_message();
      }
      if (s.ok()) ++waited;
    });
  }
  // Two polls hold their threads; the other ten were answered at once.
  while (service_->waiting_polls() < 2 || refused.load() < kPollers - 2)
    std::this_thread::yield();
  std::string session;
  {
    absl::MutexLock lock(&sessions_mu_);
    session = sessions_[scorer];
  }
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kAuthMetadataKey, std::string("Bearer ") + kToken);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::RunStatus status;
    EXPECT_TRUE(stub_->GetRunStatus(&ctx, v1::GetRunStatusRequest(), &status).ok());
    grpc::ClientContext beat_ctx;
    beat_ctx.AddMetadata(kAuthMetadataKey, std::string("Bearer ") + kToken);
    v1::HeartbeatRequest beat;
    beat.set_worker_id(scorer);
    beat.set_session(session);
    v1::HeartbeatResponse beat_resp;
    EXPECT_TRUE(stub_->Heartbeat(&beat_ctx, beat, &beat_resp).ok());
  }
  grpc::ClientContext done_ctx;
  done_ctx.AddMetadata(kAuthMetadataKey, std::string("Bearer ") + kToken);
  v1::CompleteWorkRequest done;
  done.set_worker_id(scorer);
  done.set_session(session);
  done.set_item_id(item);
  done.mutable_score()->add_rewards(-2.0);
  v1::CompleteWorkResponse ack;
  EXPECT_TRUE(stub_->CompleteWork(&done_ctx, done, &ack).ok());
  EXPECT_TRUE(ack.accepted());
  EXPECT_EQ(service_->waiting_polls(), 2);  // the polls were still waiting all along
  for (auto& t : pollers) t.join();
  EXPECT_EQ(refused.load(), kPollers - 2);
  EXPECT_EQ(waited.load(), 2);
}

// A learner whose lease is shorter than the worker's default heartbeat interval (5 s):
// the worker learns the lease at registration and heartbeats inside it, so an item that
// takes longer than the lease is not taken for a death (it was: the worker was lost,
// its result refused and the item re-issued, over and over).
class ShortLeaseTest : public BackpressureTest {
 protected:
  ShortLeaseTest() { lease_ = absl::Milliseconds(600); }
};

TEST_F(ShortLeaseTest, AWorkerComputingLongerThanTheLeaseIsNotLost) {
  WorkerOptions options;
  options.role = v1::ROLE_SCORER;
  options.name = "slow-scorer";
  options.auth_token = kToken;
  options.pull_wait_ms = 200;
  ASSERT_GT(options.heartbeat_every, lease_);
  WorkerRuntime worker(v1::Coordinator::NewStub(channel_), Model(), options,
                       FixedRewardScorer(-0.5f, absl::Milliseconds(1800)));  // 3 leases
  absl::Status run = absl::UnknownError("not run");
  std::thread worker_thread([&] { run = worker.Run(); });
  const std::string item = queue_->Submit(v1::ROLE_SCORER, ScoreItem());
  auto results = queue_->Await({item}, absl::Seconds(10));
  const int64_t lost = queue_->counters().workers_lost;
  queue_->Close();
  worker_thread.join();
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].score().rewards(0), -0.5);
  EXPECT_EQ(lost, 0) << "a live worker was declared lost while computing";
  EXPECT_TRUE(run.ok()) << run;
}

TEST(BackoffDelayTest, GrowsExponentiallyUnderTheCapAndRespectsTheHint) {
  const absl::Duration base = absl::Milliseconds(100), cap = absl::Seconds(5);
  EXPECT_EQ(BackoffDelay(0, base, cap, absl::ZeroDuration(), 1.0), base);
  EXPECT_EQ(BackoffDelay(3, base, cap, absl::ZeroDuration(), 1.0),
            absl::Milliseconds(800));
  EXPECT_EQ(BackoffDelay(40, base, cap, absl::ZeroDuration(), 1.0), cap);  // no overflow
  EXPECT_EQ(BackoffDelay(3, base, cap, absl::ZeroDuration(), 0.5),
            absl::Milliseconds(400));
  EXPECT_EQ(BackoffDelay(3, base, cap, absl::ZeroDuration(), 0.0), absl::ZeroDuration());
  EXPECT_EQ(BackoffDelay(0, base, cap, absl::Seconds(2), 0.3), absl::Seconds(2));
}

}  // namespace
}  // namespace duet
