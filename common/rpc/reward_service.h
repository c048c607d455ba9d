#ifndef DUET_COMMON_RPC_REWARD_SERVICE_H_
#define DUET_COMMON_RPC_REWARD_SERVICE_H_

// The duet.v1.Reward service (proto/duet/v1/reward.proto): an external judge that scorer
// workers call over gRPC. The server side is generic (auth, validation, bounds) around a
// scoring function that the serving program supplies (`duet reward-server` supplies the
// Shapes oracle); the client is what a scorer holds.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/token_layout.h"
#include "common/rpc/rpc_util.h"
#include "common/work/task.h"
#include "duet/v1/reward.grpc.pb.h"

namespace duet {

// Most queries in one Score call (a client splits larger batches).
inline constexpr int kMaxRewardQueries = 4096;

// The whole request checked: 1..kMaxRewardQueries queries, each with its task set and
// its input and output valid token sequences of `layout` (non-empty, not longer than the
// longest sequence, every id in the vocabulary). InvalidArgument naming the field.
absl::StatusOr<std::vector<RewardQuery>> RewardQueriesFromProto(
    const v1::ScoreRequest& request, const TokenLayout& layout);

// Scores validated queries: one finite score per query, in order, or an error (its code
// crosses the wire unchanged). Called concurrently by the server's threads.
using RewardFunction =
    std::function<absl::StatusOr<std::vector<double>>(const std::vector<RewardQuery>&)>;

// Thread-safety: Score may run concurrently (the function must allow it).
class RewardService final : public v1::Reward::Service {
 public:
  // `auth_token` empty: every call accepted. At most `max_concurrent_calls` calls are
  // scored at once; more are refused with RESOURCE_EXHAUSTED (and a retry hint).
  RewardService(TokenLayout layout, std::string auth_token, RewardFunction score,
                int max_concurrent_calls = 4);

  // Checks the token (UNAUTHENTICATED), then the request (INVALID_ARGUMENT), then
  // scores; a function that returns the wrong count or a non-finite score is INTERNAL.
  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override;

 private:
  const TokenLayout layout_;
  const std::string auth_token_;
  const RewardFunction score_;
  const int max_concurrent_calls_;
  std::atomic<int> in_flight_{
      0};  // calls being scored now (bounded by max_concurrent_calls_)
};

// Builds and starts a server of `service` on `address` ("127.0.0.1:0" picks a port,
// written to `*port`) with `credentials` (MakeServerCredentials) and Duet's message size
// limit. Unavailable when the address cannot be bound.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartRewardServer(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials,
    RewardService* service, int* port);

// A scorer's connection to a reward service.
// Thread-safety: Score may be called concurrently.
class RewardClient {
 public:
  struct Options {
    std::string address;                         // HOST:PORT
    std::string auth_token;                      // sent as the bearer token when set
    absl::Duration timeout = absl::Seconds(30);  // deadline of each call
    TransportSecurity security;                  // TLS when security.ca_file is set
  };

  // Errors: unreadable TLS files. Does not connect (the first Score does).
  static absl::StatusOr<std::unique_ptr<RewardClient>> Create(const Options& options);

  // One score per query, in order, in calls of at most kMaxRewardQueries queries. Any
  // failure is an error whose message starts "reward service at <address>: ": an
  // unreachable service is UNAVAILABLE, a slow one DEADLINE_EXCEEDED, a refusal keeps the
  // server's code, and a reply with the wrong count or a non-finite score is INTERNAL.
  // Never a made-up score.
  absl::StatusOr<std::vector<double>> Score(
      const std::vector<RewardQuery>& queries) const;

  const std::string& address() const { return options_.address; }

 private:
  RewardClient(Options options, std::shared_ptr<grpc::Channel> channel);

  const Options options_;
  std::unique_ptr<v1::Reward::Stub> stub_;
};

}  // namespace duet

#endif  // DUET_COMMON_RPC_REWARD_SERVICE_H_
