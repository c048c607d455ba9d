// The duet.v1.Reward service over real gRPC on loopback: auth, validation, bounds, the
// client's errors (an unreachable service is UNAVAILABLE naming its address, never a
// score).
#include "common/rpc/reward_service.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/model/test_models.h"
#include "gtest/gtest.h"

namespace duet {
namespace {

constexpr char kToken[] = "reward-test-token";

// Vocabulary [0, 48): text ids [8, 32), image ids [32, 48).
TokenLayout Layout() { return testing::TinyTestLayout(); }

RewardQuery GenerationQuery(int64_t first_image_id) {
  return {Task::kGeneration, /*input=*/{8, 9, 10},
          /*output=*/{first_image_id, 33, 34, 35}};
}

class RewardServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Scores each query by its output's first id, so order and values are checkable.
    service_ = std::make_unique<RewardService>(
        Layout(), kToken,
        [this](
            const std::vector<RewardQuery>& qs) -> absl::StatusOr<std::vector<double>> {
          ++calls_;
          if (!fail_with_.ok()) return fail_with_;
          std::vector<double> out;
          for (const RewardQuery& q : qs)
            out.push_back(nan_ ? std::nan("") : static_cast<double>(q.output[0]));
          return out;
        });
    absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartRewardServer(
        "127.0.0.1:0", grpc::InsecureServerCredentials(), service_.get(), &port_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    address_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<RewardClient> Client(const std::string& token,
                                       const std::string& address = "") {
    RewardClient::Options o;
    o.address = address.empty() ? address_ : address;
    o.auth_token = token;
    o.timeout = absl::Seconds(10);
    absl::StatusOr<std::unique_ptr<RewardClient>> c = RewardClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }

  // A raw call, for requests the client would not build.
  grpc::Status RawScore(const v1::ScoreRequest& request, v1::ScoreResponse* response) {
    auto stub = v1::Reward::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    auto ctx = MakeClientContext(kToken, absl::Seconds(10));
    return stub->Score(ctx.get(), request, response);
  }

  std::unique_ptr<RewardService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::atomic<int> calls_{0};
  absl::Status fail_with_;
  bool nan_ = false;
};

TEST_F(RewardServiceTest, ScoresEveryQueryInOrder) {
  absl::StatusOr<std::vector<double>> s = Client(kToken)->Score(
      {GenerationQuery(40),
       GenerationQuery(32),
       {Task::kUnderstanding, /*input=*/{32, 33, 34, 35}, /*output=*/{12, 13, 1}}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, (std::vector<double>{40, 32, 12}));
}

TEST_F(RewardServiceTest, MissingOrWrongTokenIsRefusedBeforeScoring) {
  for (const std::string token : {"", "wrong-token"}) {
    absl::StatusOr<std::vector<double>> s = Client(token)->Score({GenerationQuery(40)});
    ASSERT_FALSE(s.ok()) << "token '" << token << "'";
    EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated) << s.status();
    EXPECT_NE(s.status().message().find("reward service at " + address_),
              std::string::npos)
        << s.status();
  }
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(RewardServiceTest, IdOutsideTheVocabularyIsInvalidArgumentNamingTheField) {
  absl::StatusOr<std::vector<double>> s =
      Client(kToken)->Score({GenerationQuery(40), GenerationQuery(48)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_NE(s.status().message().find("queries[1].output: token id 48"),
            std::string::npos)
      << s.status();
  RewardQuery negative = GenerationQuery(40);
  negative.input[1] = -3;
  s = Client(kToken)->Score({negative});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("queries[0].input: token id -3"), std::string::npos)
      << s.status();
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(RewardServiceTest, BadShapesAreInvalidArgument) {
  v1::ScoreResponse response;
  v1::ScoreRequest request;
  EXPECT_EQ(RawScore(request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no queries
  v1::ScoreQuery* q = request.add_queries();
  q->mutable_input()->add_ids(8);
  q->mutable_output()->add_ids(32);
  grpc::Status s = RawScore(request, &response);  // task unset
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("task"), std::string::npos) << s.error_message();
  q->set_task(v1::TASK_GENERATION);
  for (int i = 0; i < 11; ++i) q->mutable_input()->add_ids(8);  // 12 > 10 tokens
  s = RawScore(request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("queries[0].input: 12 tokens is too long"),
            std::string::npos)
      << s.error_message();
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(RewardServiceTest, OversizeBatchIsInvalidArgumentNamingQueries) {
  v1::ScoreRequest request;
  for (int i = 0; i <= kMaxRewardQueries; ++i) {
    v1::ScoreQuery* q = request.add_queries();
    q->set_task(v1::TASK_GENERATION);
    q->mutable_input()->add_ids(8);
    q->mutable_output()->add_ids(32);
  }
  v1::ScoreResponse response;
  const grpc::Status s = RawScore(request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "queries: 4097 is more than 4096");
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(RewardServiceTest, ClientSplitsLargeBatchesIntoBoundedCalls) {
  std::vector<RewardQuery> queries(kMaxRewardQueries + 5, GenerationQuery(33));
  queries.back() = GenerationQuery(41);
  absl::StatusOr<std::vector<double>> s = Client(kToken)->Score(queries);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), queries.size());
  EXPECT_EQ(s->front(), 33);
  EXPECT_EQ(s->back(), 41);
  EXPECT_EQ(calls_.load(), 2);
}

TEST_F(RewardServiceTest, FunctionErrorsCrossWithTheirCode) {
  fail_with_ = absl::FailedPreconditionError("judge not ready");
  absl::StatusOr<std::vector<double>> s = Client(kToken)->Score({GenerationQuery(40)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_NE(s.status().message().find("judge not ready"), std::string::npos)
      << s.status();
}

TEST_F(RewardServiceTest, NonFiniteScoreIsInternalNotPassedOn) {
  nan_ = true;
  absl::StatusOr<std::vector<double>> s = Client(kToken)->Score({GenerationQuery(40)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInternal) << s.status();
  EXPECT_NE(s.status().message().find("not finite"), std::string::npos) << s.status();
}

TEST_F(RewardServiceTest, UnreachableServiceIsUnavailableNamingTheAddress) {
  // A port that was just bound and released: nothing listens there now.
  server_->Shutdown();
  server_.reset();
  absl::StatusOr<std::vector<double>> s =
      Client(kToken, address_)->Score({GenerationQuery(40)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_NE(s.status().message().find("reward service at " + address_ + ": "),
            std::string::npos)
      << s.status();
  EXPECT_NE(s.status().message().find("is the reward service up"), std::string::npos)
      << s.status();
  EXPECT_EQ(s.status().message().find("--learner"), std::string::npos) << s.status();
}

// Issue 17, finding 11: <eos> first, or twice, in a caption was accepted.
TEST(RewardQueriesFromProtoTest, ACaptionHoldsEosOnlyOnceAtItsEnd) {
  const TokenLayout layout = Layout();
  auto request = [&](std::vector<int64_t> caption) {
    v1::ScoreRequest r;
    v1::ScoreQuery* q = r.add_queries();
    q->set_task(v1::TASK_UNDERSTANDING);
    for (int i = 0; i < layout.image_tokens; ++i)
      q->mutable_input()->add_ids(layout.image_begin + i);
    for (int64_t id : caption) q->mutable_output()->add_ids(id);
    return r;
  };
  EXPECT_TRUE(RewardQueriesFromProto(request({8, 9, layout.eos}), layout).ok());
  EXPECT_TRUE(RewardQueriesFromProto(request({8, 9}), layout).ok());
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{layout.eos, 8, 9},
                                          std::vector<int64_t>{8, layout.eos, layout.eos},
                                          std::vector<int64_t>{8, layout.eos, 9}}) {
    absl::StatusOr<std::vector<RewardQuery>> r =
        RewardQueriesFromProto(request(bad), layout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << bad[0] << " " << bad[1];
    EXPECT_NE(r.status().message().find("queries[0].output"), absl::string_view::npos)
        << r.status();
  }
  // The prompt of a generation query is a caption too.
  v1::ScoreRequest gen;
  v1::ScoreQuery* q = gen.add_queries();
  q->set_task(v1::TASK_GENERATION);
  for (int64_t id : {int64_t{8}, layout.eos, int64_t{9}}) q->mutable_input()->add_ids(id);
  for (int i = 0; i < layout.image_tokens; ++i)
    q->mutable_output()->add_ids(layout.image_begin + i);
  EXPECT_EQ(RewardQueriesFromProto(gen, layout).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RewardQueriesFromProtoTest, AcceptsAValidRequestUnchanged) {
  v1::ScoreRequest request;
  v1::ScoreQuery* q = request.add_queries();
  q->set_task(v1::TASK_UNDERSTANDING);
  for (int64_t id : {32, 47, 33, 34}) q->mutable_input()->add_ids(id);
  for (int64_t id : {8, 31, 1}) q->mutable_output()->add_ids(id);
  absl::StatusOr<std::vector<RewardQuery>> r = RewardQueriesFromProto(request, Layout());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].task, Task::kUnderstanding);
  EXPECT_EQ((*r)[0].input, (std::vector<int64_t>{32, 47, 33, 34}));
  EXPECT_EQ((*r)[0].output, (std::vector<int64_t>{8, 31, 1}));
}

}  // namespace
}  // namespace duet
