// An external reward through the whole service over real gRPC on loopback: a learner-side
// Coordinator on 127.0.0.1:0, a scorer worker (WorkerRuntime) whose handler mixes the
// self-reward with a duet.v1.Reward service, driven through the learner's RemoteScorer
// (what each RL step calls). The scored step gets the weighted sum; an unreachable
// reward service fails the step with UNAVAILABLE naming its address, never zero rewards.

#include <gtest/gtest.h>

#include <thread>

#include "common/model/test_models.h"
#include "common/rpc/reward_service.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/weight_sync.h"
#include "common/worker/worker_runtime.h"
#include "learner/service/coordinator_service.h"
#include "learner/service/remote_backends.h"
#include "learner/service/work_queue.h"
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

constexpr char kToken[] = "learner-token";
constexpr char kJudgeToken[] = "judge-token";

TokenLayout Layout() { return testing::TinyTestLayout(); }

Transformer Model() {
  return *Transformer::Create(testing::TinyTestConfig(Layout().vocab_size()), 1);
}

std::vector<RewardQuery> Queries() {
  return {{Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
          {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, 2}}};
}

class ExternalRewardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Transformer>(Model());
    queue_ = std::make_unique<WorkQueue>("test");
    SerializedWeights w = SerializeParameters(model_->parameters());
    snapshot_.Set(0, std::move(w));
    RequestLimits limits;
    limits.layout = Layout();
    limits.max_sequence_tokens = 32;
    RendezvousInfo rendezvous;
    rendezvous.run_id = "test";
    rendezvous.store_prefix = "duet-0123456789abcdef";
    service_ = std::make_unique<CoordinatorService>(queue_.get(), &snapshot_, rendezvous,
                                                    kToken, limits, nullptr);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());

    // The judge: 1 for generation pairs, 0 for understanding pairs.
    judge_ = std::make_unique<RewardService>(
        Layout(), kJudgeToken,
        [this](
            const std::vector<RewardQuery>& qs) -> absl::StatusOr<std::vector<double>> {
          ++judge_calls_;
          std::vector<double> out;
          for (const RewardQuery& q : qs)
            out.push_back(q.task == Task::kGeneration ? 1.0 : 0.0);
          return out;
        });
    auto judge = StartRewardServer("127.0.0.1:0", grpc::InsecureServerCredentials(),
                                   judge_.get(), &judge_port_);
    ASSERT_TRUE(judge.ok()) << judge.status();
    judge_server_ = std::move(*judge);
    judge_address_ = "127.0.0.1:" + std::to_string(judge_port_);
  }

  void TearDown() override {
    queue_->Close();
    for (auto& t : threads_) t.join();
    server_->Shutdown();
    if (judge_server_) judge_server_->Shutdown();
  }

  void StartScorer(double self_weight, double external_weight) {
    RewardClient::Options o;
    o.address = judge_address_;
    o.auth_token = kJudgeToken;
    o.timeout = absl::Seconds(10);
    client_ = std::move(*RewardClient::Create(o));
    ScorerRewards rewards;
    rewards.self_weight = self_weight;
    rewards.external_weight = external_weight;
    rewards.external = client_.get();
    WorkerOptions w;
    w.role = v1::ROLE_SCORER;
    w.name = "test-scorer";
    w.auth_token = kToken;
    w.pull_wait_ms = 200;
    const TokenLayout layout = Layout();
    WorkHandler handler = [layout, rewards](const Transformer& m, int64_t,
                                            const v1::WorkItem& item,
                                            v1::CompleteWorkRequest* r) {
      return HandleScoreItem(m, layout, 64, item, r, rewards);
    };
    workers_.push_back(std::make_unique<WorkerRuntime>(v1::Coordinator::NewStub(channel_),
                                                       Model(), w, handler));
    WorkerRuntime* worker = workers_.back().get();
    threads_.emplace_back([worker] { EXPECT_TRUE(worker->Run().ok()); });
  }

  std::unique_ptr<Transformer> model_;
  std::unique_ptr<WorkQueue> queue_;
  WeightSnapshot snapshot_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<RewardService> judge_;
  std::unique_ptr<grpc::Server> judge_server_;
  int judge_port_ = 0;
  std::string judge_address_;
  std::atomic<int> judge_calls_{0};
  std::unique_ptr<RewardClient> client_;
  std::vector<std::unique_ptr<WorkerRuntime>> workers_;
  std::vector<std::thread> threads_;
};

TEST_F(ExternalRewardTest, TheStepGetsTheWeightedSumOfSelfAndExternalRewards) {
  StartScorer(/*self_weight=*/0.25, /*external_weight=*/2.0);
  RemoteScorer remote(
      queue_.get(), [] { return int64_t{0}; }, LoneWorkerDispatch());
  absl::StatusOr<std::vector<double>> rewards =
      remote.Score(Queries(), /*policy_version=*/0);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  absl::StatusOr<std::vector<double>> self =
      ComputeSelfRewards(*model_, Layout(), Queries(), 64, kDefaultSelfRewardKinds);
  ASSERT_TRUE(self.ok());
  ASSERT_EQ(rewards->size(), 2u);
  EXPECT_NEAR((*rewards)[0], 0.25 * (*self)[0] + 2.0 * 1.0, 1e-9);
  EXPECT_NEAR((*rewards)[1], 0.25 * (*self)[1] + 2.0 * 0.0, 1e-9);
  EXPECT_GE(judge_calls_.load(), 1);
}

TEST_F(ExternalRewardTest, AnUnreachableRewardServiceFailsTheStepNamingItsAddress) {
  judge_server_->Shutdown();
  judge_server_.reset();
  StartScorer(/*self_weight=*/1.0, /*external_weight=*/1.0);
  DispatchOptions d = LoneWorkerDispatch();
  d.max_retries = 1;  // UNAVAILABLE is transient: re-issued once, then the step fails
  RemoteScorer remote(
      queue_.get(), [] { return int64_t{0}; }, d);
  absl::StatusOr<std::vector<double>> rewards =
      remote.Score(Queries(), /*policy_version=*/0);
  ASSERT_FALSE(rewards.ok()) << "rewards were made up: " << (*rewards)[0];
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kUnavailable) << rewards.status();
  EXPECT_NE(rewards.status().message().find("reward service at " + judge_address_),
            std::string::npos)
      << rewards.status();
}

}  // namespace
}  // namespace duet
