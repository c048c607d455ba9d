// The RL service over real gRPC on loopback: a learner-side Coordinator on 127.0.0.1:0,
// rollout and scorer workers (WorkerRuntime) in threads, driven through the same remote
// backends the learner uses.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <thread>

#include "common/model/test_models.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/collective.h"
#include "common/weights/grpc_rendezvous.h"
#include "common/weights/rendezvous_store.h"
#include "common/weights/weight_sync.h"
#include "common/worker/worker_runtime.h"
#include "learner/service/coordinator_service.h"
#include "learner/service/remote_backends.h"
#include "learner/service/work_queue.h"
#include "rollout/handler.h"
#include "rollout/sampler.h"
#include "scorer/handler.h"
#include "scorer/self_reward.h"

namespace duet {
namespace {

// These tests' failing workers are their role's whole pool: the step fails at once rather
// than after DispatchOptions::pool_wait for another worker per try (that wait is
// RemoteBackendsTest.AnItemFailedByTheWholePoolWaitsForAnotherWorker's).
DispatchOptions LoneWorkerDispatch() {
  DispatchOptions d;
  d.pool_wait = absl::ZeroDuration();
  return d;
}

constexpr char kToken[] = "s3cret-token";

TokenLayout Layout() { return testing::TinyTestLayout(); }

Transformer Model(uint64_t seed) {
  return *Transformer::Create(testing::TinyTestConfig(Layout().vocab_size()), seed);
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = Layout();
    model_ = std::make_unique<Transformer>(Model(1));
    queue_ = std::make_unique<WorkQueue>("test");
    PublishWeights(0);
    RequestLimits limits;
    limits.layout = layout_;
    limits.max_sequence_tokens = 32;
    RendezvousInfo rendezvous;
    rendezvous.run_id = "test";
    rendezvous.store_prefix = "duet-0123456789abcdef";
    service_ = std::make_unique<CoordinatorService>(queue_.get(), &snapshot_, rendezvous,
                                                    kToken, limits, nullptr);
    service_->SetRendezvousStore(&rendezvous_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    queue_->Close();
    for (auto& t : threads_) t.join();
    server_->Shutdown();
  }

  void PublishWeights(int64_t version) {
    SerializedWeights w = SerializeParameters(model_->parameters());
    snapshot_.Set(version, std::move(w));
  }

  WorkerRuntime* StartWorker(v1::Role role) {
    WorkerOptions o;
    o.role = role;
    o.name = "test-worker";
    o.auth_token = kToken;
    o.pull_wait_ms = 200;
    TokenLayout layout = layout_;
    WorkHandler handler =
        role == v1::ROLE_ROLLOUT
            ? WorkHandler([layout](const Transformer& m, int64_t v,
                                   const v1::WorkItem& item, v1::CompleteWorkRequest* r) {
                return HandleRolloutItem(m, layout, v, 64, item, r);
              })
            : WorkHandler([layout](const Transformer& m, int64_t,
                                   const v1::WorkItem& item, v1::CompleteWorkRequest* r) {
                return HandleScoreItem(m, layout, 64, item, r);
              });
    workers_.push_back(std::make_unique<WorkerRuntime>(v1::Coordinator::NewStub(channel_),
                                                       Model(1), o, handler));
    WorkerRuntime* w = workers_.back().get();
    threads_.emplace_back([w] { EXPECT_TRUE(w->Run().ok()); });
    return w;
  }

  static v1::WorkItem item_for_score() {
    v1::WorkItem item;
    item.mutable_score()->add_queries()->set_task(v1::TASK_GENERATION);
    return item;
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    return MakeClientContext(token, absl::Seconds(10));
  }

  // A worker played by hand through `stub`: registers it and returns its id.
  std::string RegisterRaw(v1::Coordinator::Stub* stub, v1::Role role) {
    v1::RegisterRequest reg;
    reg.set_role(role);
    reg.set_capacity(8);
    v1::RegisterResponse resp;
    EXPECT_TRUE(stub->Register(Context(kToken).get(), reg, &resp).ok());
    sessions_[resp.worker_id()] = resp.session();
    return resp.worker_id();
  }

  // Pulls the next item for `worker_id` through `stub` (waiting up to a second).
  v1::WorkItem PullRaw(v1::Coordinator::Stub* stub, const std::string& worker_id) {
    v1::PullWorkRequest pull;
    pull.set_worker_id(worker_id);
    pull.set_session(sessions_[worker_id]);
    pull.set_wait_ms(1000);
    v1::PullWorkResponse pulled;
    EXPECT_TRUE(stub->PullWork(Context(kToken).get(), pull, &pulled).ok());
    return pulled.item();
  }

  TokenLayout layout_;
  std::unique_ptr<Transformer> model_;
  std::unique_ptr<WorkQueue> queue_;
  RendezvousStore rendezvous_;
  WeightSnapshot snapshot_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::vector<std::unique_ptr<WorkerRuntime>> workers_;
  std::vector<std::thread> threads_;
  std::map<std::string, std::string> sessions_;  // of the workers played by hand
};

TEST_F(ServiceTest, RolloutRoundTripMatchesLocalSampling) {
  StartWorker(v1::ROLE_ROLLOUT);
  StartWorker(v1::ROLE_ROLLOUT);
  DispatchOptions d = LoneWorkerDispatch();
  d.min_rows_per_item = 2;
  RemoteRollout remote(
      queue_.get(), [] { return int64_t{0}; }, d);
  RolloutRequest req;
  req.task = Task::kGeneration;
  req.inputs = {{8, 9}, {10}, {11, 12, 13}, {14}};
  req.k = 3;
  req.cfg_scale = 1.5;
  req.seed = 77;
  ASSERT_TRUE(queue_->AwaitWorkers(v1::ROLE_ROLLOUT, 2, absl::Seconds(10)).ok());
  auto groups = remote.Sample(req);
  ASSERT_TRUE(groups.ok()) << groups.status();
  auto local = SampleGroups(*model_, layout_, req, 0);
  ASSERT_TRUE(local.ok());
  ASSERT_EQ(groups->size(), 4u);
  for (size_t g = 0; g < 4; ++g) {
    EXPECT_EQ((*groups)[g].input, req.inputs[g]);
    ASSERT_EQ((*groups)[g].samples.size(), 3u);
    for (size_t s = 0; s < 3; ++s) {
      EXPECT_EQ((*groups)[g].samples[s].output, (*local)[g].samples[s].output);
    }
  }
  // Both workers took part.
  int busy = 0;
  for (const auto& w : queue_->Workers()) busy += w.items_completed > 0;
  EXPECT_EQ(busy, 2);
}

TEST_F(ServiceTest, ScorerRoundTripMatchesLocalRewards) {
  StartWorker(v1::ROLE_SCORER);
  RemoteScorer remote(
      queue_.get(), [] { return int64_t{0}; }, LoneWorkerDispatch());
  std::vector<RewardQuery> qs = {
      {Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
      {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, layout_.eos}}};
  auto rewards = remote.Score(qs, /*policy_version=*/0);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  auto local = ComputeSelfRewards(*model_, layout_, qs);
  ASSERT_EQ(rewards->size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_NEAR((*rewards)[i], (*local)[i], 1e-6);
}

TEST_F(ServiceTest, WorkerErrorsComeBackWithTheirCode) {
  StartWorker(v1::ROLE_SCORER);
  RemoteScorer remote(
      queue_.get(), [] { return int64_t{0}; }, LoneWorkerDispatch());
  // A malformed pair (two codes instead of four) fails validation on the worker.
  auto rewards = remote.Score({{Task::kGeneration, {8}, {32, 33}}}, /*policy_version=*/0);
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kInvalidArgument)
      << rewards.status();
}

TEST_F(ServiceTest, AWorkerRefusesAnItemForAPolicyVersionItDoesNotHold) {
  StartWorker(v1::ROLE_ROLLOUT);
  StartWorker(v1::ROLE_SCORER);
  // The learner believes the workers hold version 1; they hold the base (version 0).
  RemoteRollout rollout(
      queue_.get(), [] { return int64_t{1}; }, LoneWorkerDispatch());
  RolloutRequest req;
  req.inputs = {{8, 9}};
  req.k = 2;
  req.policy_version = 1;
  auto groups = rollout.Sample(req);
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kFailedPrecondition)
      << groups.status();
  RemoteScorer scorer(
      queue_.get(), [] { return int64_t{1}; }, LoneWorkerDispatch());
  auto rewards =
      scorer.Score({{Task::kGeneration, {8, 9}, {32, 33, 34, 35}}}, /*policy_version=*/1);
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kFailedPrecondition)
      << rewards.status();
}

// A broken or hostile worker, played with a raw stub: every malformed result for the item
// it holds is INVALID_ARGUMENT and leaves the item open; another worker's completion is
// PERMISSION_DENIED; the correct result is then accepted once.
TEST_F(ServiceTest, ResultsAreCheckedAgainstTheItemBeforeAnythingChanges) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_ROLLOUT);
  const std::string other = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  RolloutRequest part;
  part.task = Task::kGeneration;
  part.inputs = {{8, 9}, {10}};
  part.k = 2;
  v1::WorkItem item;
  ToProto(part, item.mutable_rollout());
  const std::string id = queue_->Submit(v1::ROLE_ROLLOUT, item);
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);

  auto good = [&] {
    v1::CompleteWorkRequest r;
    r.set_worker_id(worker);
    r.set_session(sessions_[worker]);
    r.set_item_id(id);
    for (int g = 0; g < 2; ++g) {
      auto* group = r.mutable_rollout()->add_groups();
      for (int k = 0; k < 2; ++k) {
        auto* sample = group->add_samples();
        for (int t = 0; t < layout_.image_tokens; ++t) {
          sample->mutable_output()->add_ids(layout_.image_begin + t);
          sample->add_policy_logprobs(-1.0f);
        }
      }
    }
    return r;
  };
  std::vector<std::pair<std::string, v1::CompleteWorkRequest>> bad;
  {
    v1::CompleteWorkRequest r = good();
    r.clear_rollout();
    r.mutable_score()->add_rewards(1.0);
    bad.emplace_back("a score result for a rollout item", r);
  }
  {
    v1::CompleteWorkRequest r = good();
    r.mutable_rollout()->mutable_groups()->RemoveLast();
    bad.emplace_back("one group missing", r);
  }
  {
    v1::CompleteWorkRequest r = good();
    r.mutable_rollout()->mutable_groups(1)->mutable_samples()->RemoveLast();
    bad.emplace_back("one sample missing", r);
  }
  {
    v1::CompleteWorkRequest r = good();
    auto* sample = r.mutable_rollout()->mutable_groups(0)->mutable_samples(0);
    sample->mutable_output()->clear_ids();
    sample->clear_policy_logprobs();
    bad.emplace_back("an empty output", r);
  }
  {
    v1::CompleteWorkRequest r = good();
    auto* sample = r.mutable_rollout()->mutable_groups(0)->mutable_samples(0);
    sample->mutable_output()->set_ids(0, 9);  // a text id where an image code belongs
    bad.emplace_back("a text token in an image", r);
  }
  {
    // Defect 4 of the hardening issue: a long output used to reach LibTorch and abort.
    v1::CompleteWorkRequest r = good();
    auto* sample = r.mutable_rollout()->mutable_groups(0)->mutable_samples(0);
    for (int t = 0; t < 28; ++t) {
      sample->mutable_output()->add_ids(layout_.image_begin);
      sample->add_policy_logprobs(-1.0f);
    }
    bad.emplace_back("an image of 32 codes instead of 4", r);
  }
  v1::CompleteWorkResponse ack;
  for (const auto& [what, r] : bad) {
    const grpc::Status s = stub->CompleteWork(Context(kToken).get(), r, &ack);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << what << ": " << s.error_message();
  }
  v1::CompleteWorkRequest stolen = good();
  stolen.set_worker_id(other);
  stolen.set_session(sessions_[other]);
  EXPECT_EQ(stub->CompleteWork(Context(kToken).get(), stolen, &ack).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), good(), &ack).ok());
  EXPECT_TRUE(ack.accepted());
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), good(), &ack).ok());
  EXPECT_FALSE(ack.accepted());  // a resend counts once
  auto results = queue_->Await({id}, absl::Seconds(1));
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].rollout().groups_size(), 2);
}

TEST_F(ServiceTest, ASyncResultMustConfirmWhatTheLearnerSent) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  v1::WorkItem item;
  item.mutable_sync()->set_version(3);
  item.mutable_sync()->set_checksum(777);
  const std::string id = queue_->Submit(v1::ROLE_SCORER, item, worker);
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);
  v1::CompleteWorkRequest r;
  r.set_worker_id(worker);
  r.set_session(sessions_[worker]);
  r.set_item_id(id);
  r.mutable_sync()->set_version(3);
  r.mutable_sync()->set_checksum(778);
  v1::CompleteWorkResponse ack;
  EXPECT_EQ(stub->CompleteWork(Context(kToken).get(), r, &ack).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  r.mutable_sync()->set_checksum(777);
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), r, &ack).ok());
  EXPECT_TRUE(ack.accepted());
}

TEST_F(ServiceTest, CallsWithoutTheTokenAreUnauthenticatedAndTheServerKeepsServing) {
  auto stub = v1::Coordinator::NewStub(channel_);
  v1::RegisterRequest req;
  req.set_role(v1::ROLE_ROLLOUT);
  req.set_capacity(1);
  v1::RegisterResponse resp;
  EXPECT_EQ(stub->Register(Context("").get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub->Register(Context("wrong").get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  v1::RunStatus status;
  EXPECT_EQ(stub->GetRunStatus(Context("").get(), v1::GetRunStatusRequest(), &status)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(stub->Register(Context(kToken).get(), req, &resp).ok());
  EXPECT_FALSE(resp.worker_id().empty());
  EXPECT_EQ(resp.store_prefix(), "duet-0123456789abcdef");  // only behind the token
}

TEST_F(ServiceTest, MalformedRequestsAreInvalidArgumentNamingTheField) {
  auto stub = v1::Coordinator::NewStub(channel_);
  v1::RegisterRequest reg;
  v1::RegisterResponse reg_resp;
  grpc::Status s = stub->Register(Context(kToken).get(), reg, &reg_resp);  // no role
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("role"), std::string::npos);
  reg.set_role(v1::ROLE_ROLLOUT);
  s = stub->Register(Context(kToken).get(), reg,
                     &reg_resp);  // capacity 0: could never take work
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("capacity"), std::string::npos);
  reg.set_capacity(4);
  ASSERT_TRUE(stub->Register(Context(kToken).get(), reg, &reg_resp).ok());

  v1::CompleteWorkRequest bad;
  bad.set_worker_id(reg_resp.worker_id());
  bad.set_item_id("x");
  auto* sample = bad.mutable_rollout()->add_groups()->add_samples();
  sample->mutable_output()->add_ids(layout_.vocab_size() + 5);
  sample->add_policy_logprobs(-1.0f);
  v1::CompleteWorkResponse ack;
  s = stub->CompleteWork(Context(kToken).get(), bad, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("rollout.groups[0].samples[0].output"),
            std::string::npos)
      << s.error_message();

  v1::PullWorkRequest pull;
  pull.set_worker_id(reg_resp.worker_id());
  pull.set_wait_ms(60000);
  v1::PullWorkResponse pulled;
  EXPECT_EQ(stub->PullWork(Context(kToken).get(), pull, &pulled).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  pull.set_worker_id("nobody");
  pull.set_wait_ms(10);
  EXPECT_EQ(stub->PullWork(Context(kToken).get(), pull, &pulled).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Still serving.
  v1::RunStatus status;
  EXPECT_TRUE(
      stub->GetRunStatus(Context(kToken).get(), v1::GetRunStatusRequest(), &status).ok());
}

TEST_F(ServiceTest, CompletingAnItemTwiceCountsOnce) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  v1::WorkItem item;
  item.mutable_score()->add_queries()->set_task(v1::TASK_GENERATION);
  const std::string id = queue_->Submit(v1::ROLE_SCORER, item);
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);
  v1::CompleteWorkRequest done;
  done.set_worker_id(worker);
  done.set_session(sessions_[worker]);
  done.set_item_id(id);
  done.mutable_score()->add_rewards(-1.5);
  v1::CompleteWorkResponse ack;
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), done, &ack).ok());
  EXPECT_TRUE(ack.accepted());
  done.mutable_score()->set_rewards(0, -9.0);
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), done, &ack).ok());
  EXPECT_FALSE(ack.accepted());
  auto results = queue_->Await({id}, absl::Seconds(1));
  ASSERT_TRUE(results.ok());
  EXPECT_EQ((*results)[0].score().rewards(0), -1.5);  // the first result stands
}

TEST_F(ServiceTest, WorkersFetchNewWeightsOverTheStreamAndVerifyThem) {
  WorkerRuntime* w = StartWorker(v1::ROLE_ROLLOUT);
  ASSERT_TRUE(queue_->AwaitWorkers(v1::ROLE_ROLLOUT, 1, absl::Seconds(10)).ok());
  {
    torch::NoGradGuard ng;
    for (auto& p : model_->parameters()) p.add_(0.01);
  }
  PublishWeights(1);
  v1::WorkItem item;
  item.mutable_sync()->set_version(1);
  item.mutable_sync()->set_checksum(snapshot_.checksum());
  item.mutable_sync()->set_fetch_over_grpc(true);
  const std::string id = queue_->Submit(v1::ROLE_ROLLOUT, item, queue_->Workers()[0].id);
  auto results = queue_->Await({id}, absl::Seconds(30));
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_FALSE((*results)[0].has_error()) << (*results)[0].error().message();
  EXPECT_EQ((*results)[0].sync().checksum(), snapshot_.checksum());
  EXPECT_EQ(w->version(), 1);
  EXPECT_EQ(w->checksum(), WeightChecksum(model_->parameters()));
}

// Issue 17, finding 1: a correct rollout result whose policy_version is newer than the
// learner has published (which the RL loop would refuse, ending the run) or older than
// the item asked for is INVALID_ARGUMENT, and the item stays open for a correct result.
TEST_F(ServiceTest, AResultFromAVersionTheItemCannotHaveIsRefused) {
  auto stub = v1::Coordinator::NewStub(channel_);
  PublishWeights(2);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  v1::WorkItem item;
  item.set_policy_version(1);
  item.mutable_score()->add_queries()->set_task(v1::TASK_GENERATION);
  const std::string id = queue_->Submit(v1::ROLE_SCORER, item);
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);
  v1::CompleteWorkRequest r;
  r.set_worker_id(worker);
  r.set_session(sessions_[worker]);
  r.set_item_id(id);
  r.mutable_score()->add_rewards(-1.0);
  v1::CompleteWorkResponse ack;
  for (const int64_t version :
       {int64_t{3}, int64_t{102}, int64_t{1} << 62, int64_t{0}, int64_t{-1}}) {
    r.set_policy_version(version);
    const grpc::Status s = stub->CompleteWork(Context(kToken).get(), r, &ack);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << version << ": " << s.error_message();
    EXPECT_NE(s.error_message().find("policy_version"), std::string::npos)
        << s.error_message();
  }
  r.set_policy_version(2);  // newer than the item (a sync reached the worker): fine
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), r, &ack).ok());
  EXPECT_TRUE(ack.accepted());
}

// Issue 17, findings 4 and 8: with the run token but without a worker's session, a caller
// can neither keep that worker alive, nor pull or complete in its name, nor make it
// leave.
TEST_F(ServiceTest, CallsInAWorkersNameNeedItsSession) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  const std::string intruder = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  for (const std::string& session :
       {std::string(), sessions_[intruder], std::string(32, '0')}) {
    v1::HeartbeatRequest beat;
    beat.set_worker_id(worker);
    beat.set_session(session);
    v1::HeartbeatResponse beat_resp;
    EXPECT_EQ(stub->Heartbeat(Context(kToken).get(), beat, &beat_resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    v1::DeregisterRequest leave;
    leave.set_worker_id(worker);
    leave.set_session(session);
    v1::DeregisterResponse left;
    EXPECT_EQ(stub->Deregister(Context(kToken).get(), leave, &left).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    v1::PullWorkRequest pull;
    pull.set_worker_id(worker);
    pull.set_session(session);
    v1::PullWorkResponse pulled;
    EXPECT_EQ(stub->PullWork(Context(kToken).get(), pull, &pulled).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(queue_->CountWorkers(v1::ROLE_SCORER), 2);  // nothing changed
  const std::string id = queue_->Submit(v1::ROLE_SCORER, item_for_score());
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);
  v1::CompleteWorkRequest r;
  r.set_worker_id(worker);
  r.set_session(sessions_[intruder]);
  r.set_item_id(id);
  r.mutable_score()->add_rewards(-1.0);
  v1::CompleteWorkResponse ack;
  EXPECT_EQ(stub->CompleteWork(Context(kToken).get(), r, &ack).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // The worker itself still can.
  v1::HeartbeatRequest beat;
  beat.set_worker_id(worker);
  beat.set_session(sessions_[worker]);
  v1::HeartbeatResponse beat_resp;
  EXPECT_TRUE(stub->Heartbeat(Context(kToken).get(), beat, &beat_resp).ok());
  r.set_session(sessions_[worker]);
  ASSERT_TRUE(stub->CompleteWork(Context(kToken).get(), r, &ack).ok());
  EXPECT_TRUE(ack.accepted());
}

// Issue 17, finding 9: a result from a worker the learner no longer knows (lost, gone or
// quarantined) is NOT_FOUND, as design.md says; a duplicate of a known worker stays
// acknowledged with accepted = false. An error code outside the status codes is refused.
TEST_F(ServiceTest, AResultFromAWorkerThatLeftIsNotFoundAndErrorCodesMustBeStatusCodes) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string worker = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  const std::string id = queue_->Submit(v1::ROLE_SCORER, item_for_score());
  ASSERT_EQ(PullRaw(stub.get(), worker).item_id(), id);
  v1::CompleteWorkRequest r;
  r.set_worker_id(worker);
  r.set_session(sessions_[worker]);
  r.set_item_id(id);
  v1::CompleteWorkResponse ack;
  for (const int code : {0, 17, 99, -3}) {
    r.mutable_error()->set_code(code);
    EXPECT_EQ(stub->CompleteWork(Context(kToken).get(), r, &ack).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << code;
  }
  r.mutable_score()->add_rewards(-1.0);
  v1::DeregisterRequest leave;
  leave.set_worker_id(worker);
  leave.set_session(sessions_[worker]);
  v1::DeregisterResponse left;
  ASSERT_TRUE(stub->Deregister(Context(kToken).get(), leave, &left).ok());
  EXPECT_EQ(stub->CompleteWork(Context(kToken).get(), r, &ack).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// Issue 17, finding 7: the ranks meet through the learner's store over the authenticated
// gRPC service (there is no store port for an outsider to hold): a call needs the run
// token and a registered worker's session, keys go only under the open epoch's prefix,
// and a Gloo group of the learner's rank (in process) and two workers (over gRPC) forms
// through it and broadcasts.
TEST_F(ServiceTest, TheRendezvousIsBehindTheTokenAndASessionAndAGroupMeetsThroughIt) {
  auto stub = v1::Coordinator::NewStub(channel_);
  const std::string a = RegisterRaw(stub.get(), v1::ROLE_ROLLOUT);
  const std::string b = RegisterRaw(stub.get(), v1::ROLE_SCORER);
  rendezvous_.OpenPrefix("epoch-7");
  v1::RendezvousRequest set;
  set.set_worker_id(a);
  set.set_session(sessions_[a]);
  set.mutable_set()->set_key("epoch-7/x");
  set.mutable_set()->set_value("v");
  v1::RendezvousResponse resp;
  EXPECT_EQ(stub->Rendezvous(Context("").get(), set, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  set.set_session(sessions_[b]);
  EXPECT_EQ(stub->Rendezvous(Context(kToken).get(), set, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  set.set_session(sessions_[a]);
  set.mutable_set()->set_key("elsewhere/x");
  EXPECT_EQ(stub->Rendezvous(Context(kToken).get(), set, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  set.mutable_set()->set_key("epoch-7/x");
  set.mutable_set()->set_value(std::string(RendezvousStore::kMaxValueBytes + 1, 'v'));
  EXPECT_EQ(stub->Rendezvous(Context(kToken).get(), set, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(*rendezvous_.NumKeys(), 0);  // nothing refused was kept

  std::shared_ptr<RendezvousStore> local(
      &rendezvous_, [](RendezvousStore*) {});  // the learner's own rank
  std::shared_ptr<v1::Coordinator::StubInterface> shared_stub =
      v1::Coordinator::NewStub(channel_);
  std::vector<std::shared_ptr<RendezvousClient>> clients = {
      local,
      std::make_shared<GrpcRendezvousClient>(shared_stub, kToken, a, sessions_[a],
                                             absl::Seconds(10)),
      std::make_shared<GrpcRendezvousClient>(shared_stub, kToken, b, sessions_[b],
                                             absl::Seconds(10))};
  std::vector<absl::Status> results(3);
  std::vector<torch::Tensor> got(3);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      CollectiveOptions c;
      c.rendezvous = clients[r];
      c.rank = r;
      c.world_size = 3;
      c.group_prefix = "epoch-7";
      c.timeout = absl::Seconds(20);
      absl::StatusOr<std::unique_ptr<Collective>> group = CreateCollective(c);
      if (!group.ok()) {
        results[r] = group.status();
        return;
      }
      got[r] = r == 0 ? torch::full({4}, 2.5f) : torch::zeros({4});
      results[r] = (*group)->Broadcast(got[r], /*root=*/0);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(results[r].ok()) << r << ": " << results[r];
    EXPECT_TRUE(torch::equal(got[r], torch::full({4}, 2.5f))) << r;
  }
}

}  // namespace
}  // namespace duet
