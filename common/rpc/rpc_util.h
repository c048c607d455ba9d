#ifndef DUET_COMMON_RPC_RPC_UTIL_H_
#define DUET_COMMON_RPC_RPC_UTIL_H_

// What every Duet gRPC server and client shares: status mapping (absl and gRPC codes have
// the same numbers, so codes cross unchanged, never collapsed to UNKNOWN), the
// shared-token check (constant time), transport security from certificate files, and
// deadlines.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace duet {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Backpressure. A server that refuses a call with RESOURCE_EXHAUSTED says in this
// trailing-metadata entry how long the client should wait before trying again
// (milliseconds, decimal); clients back off at least that long.
inline constexpr char kRetryAfterMetadataKey[] = "duet-retry-after-ms";

// ToGrpcStatus(status); when `status` is ResourceExhausted, also puts `retry_after` into
// `context`'s trailing metadata.
grpc::Status ToGrpcStatusWithRetryHint(const absl::Status& status,
                                       grpc::ServerContextBase* context,
                                       absl::Duration retry_after);

// The retry hint of a finished call, or zero when the server sent none (or garbage).
absl::Duration RetryAfter(const grpc::ClientContext& context);

// How long to wait before retry number `attempt` (0-based): capped exponential backoff
// with full jitter, uniform in [0, min(cap, base * 2^attempt)] (`uniform01` in [0, 1]
// picks the point), and never less than the server's `hint`.
absl::Duration BackoffDelay(int attempt, absl::Duration base, absl::Duration cap,
                            absl::Duration hint, double uniform01);

// Metadata key of the shared token: "authorization: Bearer <token>".
inline constexpr char kAuthMetadataKey[] = "authorization";

// OK when `context` carries the expected token, compared in constant time;
// Unauthenticated otherwise. An empty `expected` accepts every call (auth disabled).
absl::Status CheckToken(const grpc::ServerContextBase& context,
                        const std::string& expected);

// The shared token from, in order: the contents of `token_file` (whitespace stripped)
// when it is set, `token_flag` when it is set, else $DUET_AUTH_TOKEN; empty when none.
// Errors: reading the file.
absl::StatusOr<std::string> ResolveAuthToken(const std::string& token_flag,
                                             const std::string& token_file);

// Compares two strings in time that depends only on their lengths.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

struct TransportSecurity {
  std::string cert_file;    // PEM certificate of this endpoint (TLS on when set)
  std::string key_file;     // PEM private key of this endpoint
  std::string ca_file;      // PEM CA that signs the peer (mutual TLS on the server side
                            // when set; the trust root on the client side)
  std::string server_name;  // client only: name to verify in the server certificate
};

// Insecure credentials when no certificate is configured; TLS (mutual when ca_file is
// set) otherwise. Errors name the unreadable file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportSecurity& security);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TransportSecurity& security);

// Message size limit of every Duet channel and server (weights stream in chunks).
inline constexpr int kMaxMessageBytes = 64 << 20;

// Why a call could not reach its server, in an operator's words, read from the status
// gRPC gave: a TLS handshake that failed (wrong CA, server name or client certificate), a
// server that closed the connection unanswered (a plaintext client at a TLS server),
// a refused connection, a name that does not resolve. Empty when the status is not
// about connecting.
struct ConnectionProblem {
  enum Kind { kNone, kTls, kClosed, kRefused, kUnresolved } kind = kNone;
  std::string hint;
};
ConnectionProblem DiagnoseConnection(const absl::Status& status);
// The same, knowing the caller's own transport settings: a connection that a server
// closes on a TLS client without a client certificate names that (a mutual-TLS server
// requires one) instead of asking for --tls_ca it already has.
ConnectionProblem DiagnoseConnection(const absl::Status& status,
                                     const TransportSecurity& security);

// A client context with `token` attached and a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> MakeClientContext(const std::string& token,
                                                       absl::Duration timeout);

// A channel to `target` with Duet's message size limits and keepalive pings (20 s, 10 s
// timeout, also between calls); a non-empty `tls_server_name` is the name verified in the
// server's certificate instead of the target's host.
std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds,
    const std::string& tls_server_name = "");

// Lets a server accept MakeChannel's keepalive pings (without it, gRPC answers frequent
// pings with GOAWAY "too_many_pings").
void AllowClientKeepalive(grpc::ServerBuilder* builder);

}  // namespace duet

#endif  // DUET_COMMON_RPC_RPC_UTIL_H_
