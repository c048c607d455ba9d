#include "common/rpc/rpc_util.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

grpc::Status ToGrpcStatusWithRetryHint(const absl::Status& status,
                                       grpc::ServerContextBase* context,
                                       absl::Duration retry_after) {
  if (absl::IsResourceExhausted(status)) {
    context->AddTrailingMetadata(kRetryAfterMetadataKey,
                                 absl::StrCat(absl::ToInt64Milliseconds(retry_after)));
  }
  return ToGrpcStatus(status);
}

absl::Duration RetryAfter(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRetryAfterMetadataKey);
  int64_t ms = 0;
  if (it == trailers.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) ||
      ms < 0) {
    return absl::ZeroDuration();
  }
  return absl::Milliseconds(std::min<int64_t>(ms, 60000));  // a hint, not a hold
}

absl::Duration BackoffDelay(int attempt, absl::Duration base, absl::Duration cap,
                            absl::Duration hint, double uniform01) {
  absl::Duration ceiling = base;
  for (int i = 0; i < attempt && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  return std::max(hint, ceiling * std::clamp(uniform01, 0.0, 1.0));
}

absl::StatusOr<std::string> ResolveAuthToken(const std::string& token_flag,
                                             const std::string& token_file) {
  if (!token_file.empty()) {
    DUET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(token_file));
    return std::string(absl::StripAsciiWhitespace(text));
  }
  if (!token_flag.empty()) return token_flag;
  const char* env = std::getenv("DUET_AUTH_TOKEN");
  return std::string(env != nullptr ? env : "");
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::Status CheckToken(const grpc::ServerContextBase& context,
                        const std::string& expected) {
  if (expected.empty()) return absl::OkStatus();
  const auto& md = context.client_metadata();
  auto it = md.find(kAuthMetadataKey);
  if (it == md.end()) return absl::UnauthenticatedError("missing authorization token");
  const std::string value(it->second.data(), it->second.size());
  if (!ConstantTimeEquals(value, "Bearer " + expected)) {
    return absl::UnauthenticatedError("invalid authorization token");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportSecurity& s) {
  if (s.cert_file.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions opts(
      s.ca_file.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  DUET_ASSIGN_OR_RETURN(pair.cert_chain, ReadFileToString(s.cert_file));
  DUET_ASSIGN_OR_RETURN(pair.private_key, ReadFileToString(s.key_file));
  opts.pem_key_cert_pairs.push_back(pair);
  if (!s.ca_file.empty()) {
    DUET_ASSIGN_OR_RETURN(opts.pem_root_certs, ReadFileToString(s.ca_file));
  }
  return grpc::SslServerCredentials(opts);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TransportSecurity& s) {
  if (s.ca_file.empty() && s.cert_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions opts;
  if (!s.ca_file.empty()) {
    DUET_ASSIGN_OR_RETURN(opts.pem_root_certs, ReadFileToString(s.ca_file));
  }
  if (!s.cert_file.empty()) {
    DUET_ASSIGN_OR_RETURN(opts.pem_cert_chain, ReadFileToString(s.cert_file));
    DUET_ASSIGN_OR_RETURN(opts.pem_private_key, ReadFileToString(s.key_file));
  }
  return grpc::SslCredentials(opts);
}

std::unique_ptr<grpc::ClientContext> MakeClientContext(const std::string& token,
                                                       absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata(kAuthMetadataKey, "Bearer " + token);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

ConnectionProblem DiagnoseConnection(const absl::Status& status) {
  if (!absl::IsUnavailable(status) && !absl::IsUnknown(status)) return {};
  const absl::string_view m = status.message();
  auto has = [m](absl::string_view s) { return absl::StrContains(m, s); };
  if (has("andshake") || has("SSL") || has("certificate")) {
    return {ConnectionProblem::kTls,
            "the TLS handshake with the learner failed: check --tls_ca (the CA that "
            "signed the learner's "
            "certificate), --tls_server_name (a name in that certificate) and, for "
            "mutual TLS, "
            "--tls_cert/--tls_key"};
  }
  if (has("Socket closed") || has("Connection reset")) {
    return {ConnectionProblem::kClosed,
            "the learner closed the connection without answering: it may require TLS "
            "(give --tls_ca), "
            "or --learner points at another service"};
  }
  if (has("Connection refused")) {
    return {ConnectionProblem::kRefused,
            "nothing listens at the learner's address: is the learner up, and is "
            "--learner right?"};
  }
  if (has("DNS resolution failed") || has("empty address list") ||
      has("Name or service not known")) {
    return {ConnectionProblem::kUnresolved,
            "the learner's host name does not resolve: check --learner"};
  }
  return {};
}

ConnectionProblem DiagnoseConnection(const absl::Status& status,
                                     const TransportSecurity& security) {
  ConnectionProblem p = DiagnoseConnection(status);
  const bool tls_without_cert = !security.ca_file.empty() && security.cert_file.empty();
  if (tls_without_cert && p.kind == ConnectionProblem::kClosed) {
    p.hint =
        "the learner ended the TLS handshake: it may require a client certificate "
        "(mutual TLS): give "
        "--tls_cert and --tls_key (signed by the CA the learner's --tls_client_ca names)";
  }
  return p;
}

std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds,
    const std::string& tls_server_name) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
  // Keepalive: a connection to a learner that vanished (a node lost, a network cut, no
  // RST) fails within ~30 s instead of hanging a long-poll until its deadline; the worker
  // then reconnects. The server side admits these pings (AllowClientKeepalive).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return grpc::CreateCustomChannel(target, creds, args);
}

void AllowClientKeepalive(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              10000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

}  // namespace duet
