// The scorer's reward sources over a real duet.v1.Reward server on loopback: the
// self-reward alone (default, unchanged), the external score alone, their weighted sum,
// and an unreachable service, which fails the item with UNAVAILABLE naming the address.
#include "scorer/handler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/model/test_models.h"
#include "common/rpc/proto_convert.h"
#include "scorer/self_reward.h"

namespace duet {
namespace {

constexpr char kToken[] = "judge-token";

TokenLayout Layout() { return testing::TinyTestLayout(); }

// Two generation pairs and one understanding pair of the tiny layout.
std::vector<RewardQuery> Queries() {
  const TokenLayout l = Layout();
  return {{Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
          {Task::kGeneration, {8, 9}, {40, 41, 42, 43}},
          {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, l.eos}}};
}

v1::WorkItem ScoreItem(const std::vector<RewardQuery>& queries) {
  v1::WorkItem item;
  item.set_item_id("score-1");
  ToProto(queries, item.mutable_score());
  return item;
}

class ScorerRewardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Transformer>(
        *Transformer::Create(testing::TinyTestConfig(Layout().vocab_size()), 3));
    // The judge: 1 for a generation pair whose image starts with code 32, 0.25 otherwise;
    // -2 for every understanding pair.
    service_ = std::make_unique<RewardService>(
        Layout(), kToken,
        [this](
            const std::vector<RewardQuery>& qs) -> absl::StatusOr<std::vector<double>> {
          ++calls_;
          std::vector<double> out;
          for (const RewardQuery& q : qs) {
            out.push_back(
                q.task == Task::kUnderstanding ? -2.0 : (q.output[0] == 32 ? 1.0 : 0.25));
          }
          return out;
        });
    auto server = StartRewardServer("127.0.0.1:0", grpc::InsecureServerCredentials(),
                                    service_.get(), &port_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = MakeClient("127.0.0.1:" + std::to_string(port_));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  static std::unique_ptr<RewardClient> MakeClient(const std::string& address) {
    RewardClient::Options o;
    o.address = address;
    o.auth_token = kToken;
    o.timeout = absl::Seconds(10);
    return std::move(*RewardClient::Create(o));
  }

  std::vector<double> SelfRewards() {
    auto r =
        ComputeSelfRewards(*model_, Layout(), Queries(), 64, kDefaultSelfRewardKinds);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  std::unique_ptr<Transformer> model_;
  std::unique_ptr<RewardService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<RewardClient> client_;
  std::atomic<int> calls_{0};
};

TEST_F(ScorerRewardsTest, DefaultIsTheSelfRewardBitForBitAndNeverCallsTheService) {
  ScorerRewards r;
  r.external = client_.get();  // present, but its weight is 0
  v1::CompleteWorkRequest result;
  ASSERT_TRUE(
      HandleScoreItem(*model_, Layout(), 64, ScoreItem(Queries()), &result, r).ok());
  const std::vector<double> self = SelfRewards();
  ASSERT_EQ(result.score().rewards_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(result.score().rewards(i), self[i]) << i;
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ScorerRewardsTest, ExternalAloneIsTheServiceScore) {
  ScorerRewards r;
  r.self_weight = 0.0;
  r.external_weight = 1.0;
  r.external = client_.get();
  auto out = ComputeScorerRewards(*model_, Layout(), Queries(), 64, r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, (std::vector<double>{1.0, 0.25, -2.0}));
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(ScorerRewardsTest, MixedRewardIsTheWeightedSum) {
  ScorerRewards r;
  r.self_weight = 0.5;
  r.external_weight = 3.0;
  r.external = client_.get();
  v1::CompleteWorkRequest result;
  ASSERT_TRUE(
      HandleScoreItem(*model_, Layout(), 64, ScoreItem(Queries()), &result, r).ok());
  const std::vector<double> self = SelfRewards();
  const std::vector<double> external = {1.0, 0.25, -2.0};
  ASSERT_EQ(result.score().rewards_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(result.score().rewards(i), 0.5 * self[i] + 3.0 * external[i]) << i;
  }
  // The self part is there: the mix differs from the external part alone.
  EXPECT_NE(result.score().rewards(0), 3.0);
}

TEST_F(ScorerRewardsTest, UnreachableServiceFailsTheItemNamingTheAddress) {
  const std::string address = "127.0.0.1:" + std::to_string(port_);
  server_->Shutdown();
  server_.reset();
  ScorerRewards r;
  r.external_weight = 1.0;
  r.external = client_.get();
  v1::CompleteWorkRequest result;
  const absl::Status s =
      HandleScoreItem(*model_, Layout(), 64, ScoreItem(Queries()), &result, r);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("reward service at " + address), std::string::npos) << s;
  EXPECT_FALSE(result.has_score());  // no rewards, not zeros
}

TEST_F(ScorerRewardsTest, ExternalWeightWithoutAServiceIsFailedPrecondition) {
  ScorerRewards r;
  r.external_weight = 1.0;
  auto out = ComputeScorerRewards(*model_, Layout(), Queries(), 64, r);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition) << out.status();
}

TEST_F(ScorerRewardsTest, AServiceWithAnotherTokenFailsTheItemUnauthenticated) {
  RewardClient::Options o;
  o.address = "127.0.0.1:" + std::to_string(port_);
  o.auth_token = "not-the-token";
  auto wrong = RewardClient::Create(o);
  ASSERT_TRUE(wrong.ok());
  ScorerRewards r;
  r.external_weight = 1.0;
  r.external = wrong->get();
  auto out = ComputeScorerRewards(*model_, Layout(), Queries(), 64, r);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnauthenticated) << out.status();
  EXPECT_EQ(calls_.load(), 0);
}

}  // namespace
}  // namespace duet
