#include "common/rpc/reward_service.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/rpc/proto_convert.h"

namespace duet {
namespace {

// Releases a seat of RewardService::in_flight_ when the call ends.
class InFlightSeat {
 public:
  explicit InFlightSeat(std::atomic<int>* counter) : counter_(counter) {}
  ~InFlightSeat() { counter_->fetch_sub(1); }

 private:
  std::atomic<int>* counter_;
};

absl::Status CheckScores(const std::vector<double>& scores, size_t expected) {
  if (scores.size() != expected) {
    return absl::InternalError(
        absl::StrCat(scores.size(), " scores for ", expected, " queries"));
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i]))
      return absl::InternalError(absl::StrCat("scores[", i, "] is not finite"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<RewardQuery>> RewardQueriesFromProto(
    const v1::ScoreRequest& request, const TokenLayout& layout) {
  if (request.queries_size() > kMaxRewardQueries) {
    return absl::InvalidArgumentError(absl::StrCat("queries: ", request.queries_size(),
                                                   " is more than ", kMaxRewardQueries));
  }
  // The same per-query checks as a scorer's work item (common/rpc/proto_convert.h).
  v1::ScoreWork work;
  *work.mutable_queries() = request.queries();
  absl::StatusOr<std::vector<RewardQuery>> queries = FromProto(work, layout);
  if (!queries.ok()) return queries;
  // A caption is text ids with at most one <eos>, at its end: an <eos> anywhere else is
  // no caption the grammar (or a model) produces.
  for (size_t i = 0; i < queries->size(); ++i) {
    const RewardQuery& q = (*queries)[i];
    const bool generation = q.task == Task::kGeneration;
    const std::vector<int64_t>& caption = generation ? q.input : q.output;
    for (size_t j = 0; j + 1 < caption.size(); ++j) {
      if (caption[j] == layout.eos) {
        return absl::InvalidArgumentError(
            absl::StrCat("queries[", i, "].", generation ? "input" : "output",
                         ": a caption may hold <eos> only once, at its end"));
      }
    }
  }
  return queries;
}

RewardService::RewardService(TokenLayout layout, std::string auth_token,
                             RewardFunction score, int max_concurrent_calls)
    : layout_(layout),
      auth_token_(std::move(auth_token)),
      score_(std::move(score)),
      max_concurrent_calls_(std::max(1, max_concurrent_calls)) {}

grpc::Status RewardService::Score(grpc::ServerContext* context,
                                  const v1::ScoreRequest* request,
                                  v1::ScoreResponse* response) {
  if (auto s = CheckToken(*context, auth_token_); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<std::vector<RewardQuery>> queries =
      RewardQueriesFromProto(*request, layout_);
  if (!queries.ok()) return ToGrpcStatus(queries.status());
  if (in_flight_.fetch_add(1) >= max_concurrent_calls_) {
    in_flight_.fetch_sub(1);
    return ToGrpcStatusWithRetryHint(
        absl::ResourceExhaustedError(
            absl::StrCat("reward service: ", max_concurrent_calls_, " calls in flight")),
        context, absl::Milliseconds(200));
  }
  InFlightSeat seat(&in_flight_);
  absl::StatusOr<std::vector<double>> scores = score_(*queries);
  if (!scores.ok()) return ToGrpcStatus(scores.status());
  if (auto s = CheckScores(*scores, queries->size()); !s.ok()) return ToGrpcStatus(s);
  response->mutable_scores()->Assign(scores->begin(), scores->end());
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartRewardServer(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials,
    RewardService* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, std::move(credentials), port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Bounded threads: a flood of connections cannot make the server hold more.
  grpc::ResourceQuota quota("duet-reward");
  quota.SetMaxThreads(16);
  builder.SetResourceQuota(quota);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0)
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  return server;
}

absl::StatusOr<std::unique_ptr<RewardClient>> RewardClient::Create(
    const Options& options) {
  if (options.address.empty())
    return absl::InvalidArgumentError("reward service address: empty");
  DUET_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                        MakeChannelCredentials(options.security));
  std::shared_ptr<grpc::Channel> channel =
      MakeChannel(options.address, creds, options.security.server_name);
  return std::unique_ptr<RewardClient>(new RewardClient(options, std::move(channel)));
}

RewardClient::RewardClient(Options options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), stub_(v1::Reward::NewStub(channel)) {}

absl::StatusOr<std::vector<double>> RewardClient::Score(
    const std::vector<RewardQuery>& queries) const {
  auto fail = [this](const absl::Status& s) {
    std::string message =
        absl::StrCat("reward service at ", options_.address, ": ", s.message());
    // DiagnoseConnection's hints name the learner's flags; the reward service's own
    // words.
    switch (DiagnoseConnection(s).kind) {
      case ConnectionProblem::kRefused:
        absl::StrAppend(&message,
                        " (nothing listens there: is the reward service up, and is "
                        "reward.external_address right?)");
        break;
      case ConnectionProblem::kUnresolved:
        absl::StrAppend(
            &message, " (the host name does not resolve: check reward.external_address)");
        break;
      case ConnectionProblem::kTls:
      case ConnectionProblem::kClosed:
        absl::StrAppend(&message,
                        " (TLS: the service and --external_reward_tls_ca must agree)");
        break;
      case ConnectionProblem::kNone:
        break;
    }
    return absl::Status(s.code(), message);
  };
  std::vector<double> out;
  out.reserve(queries.size());
  for (size_t begin = 0; begin < queries.size(); begin += kMaxRewardQueries) {
    const size_t end =
        std::min(queries.size(), begin + static_cast<size_t>(kMaxRewardQueries));
    v1::ScoreRequest request;
    for (size_t i = begin; i < end; ++i) {
      v1::ScoreQuery* q = request.add_queries();
      q->set_task(ToProto(queries[i].task));
      q->mutable_input()->mutable_ids()->Assign(queries[i].input.begin(),
                                                queries[i].input.end());
      q->mutable_output()->mutable_ids()->Assign(queries[i].output.begin(),
                                                 queries[i].output.end());
    }
    v1::ScoreResponse response;
    std::unique_ptr<grpc::ClientContext> ctx =
        MakeClientContext(options_.auth_token, options_.timeout);
    const absl::Status s = FromGrpcStatus(stub_->Score(ctx.get(), request, &response));
    if (!s.ok()) return fail(s);
    const std::vector<double> scores(response.scores().begin(), response.scores().end());
    if (auto c = CheckScores(scores, end - begin); !c.ok()) return fail(c);
    out.insert(out.end(), scores.begin(), scores.end());
  }
  return out;
}

}  // namespace duet
