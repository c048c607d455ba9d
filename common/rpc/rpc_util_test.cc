#include "common/rpc/rpc_util.h"

#include <gtest/gtest.h>

namespace duet {
namespace {

// The messages gRPC 1.51 gives a client in each case (seen with the real binaries).
TEST(DiagnoseConnectionTest, NamesTheLikelyCause) {
  EXPECT_EQ(DiagnoseConnection(
                absl::UnavailableError("failed to connect to all addresses; last error: "
                                       "UNKNOWN: ipv4:127.0.0.1:4: "
                                       "Ssl handshake failed: SSL_ERROR_SSL: "
                                       "error:0A000086:SSL routines::certificate "
                                       "verify failed"))
                .kind,
            ConnectionProblem::kTls);
  const ConnectionProblem closed = DiagnoseConnection(
      absl::UnavailableError("failed to connect to all addresses; last error: "
                             "UNAVAILABLE: ipv4:127.0.0.1:4: Socket closed"));
  EXPECT_EQ(closed.kind, ConnectionProblem::kClosed);
  EXPECT_NE(closed.hint.find("--tls_ca"), std::string::npos);
  EXPECT_EQ(
      DiagnoseConnection(absl::UnavailableError(
                             "failed to connect to all addresses; last error: UNKNOWN: "
                             "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                             "Connection refused"))
          .kind,
      ConnectionProblem::kRefused);
  EXPECT_EQ(
      DiagnoseConnection(absl::UnavailableError("DNS resolution failed for nosuchhost:1"))
          .kind,
      ConnectionProblem::kUnresolved);
}

// Issue 17, finding 11: a worker with --tls_ca but no client certificate, refused by a
// mutual-TLS learner, was told to give --tls_ca.
TEST(DiagnoseConnectionTest, ATlsClientWithoutACertificateIsToldAboutMutualTls) {
  const absl::Status closed = absl::UnavailableError(
      "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:4: "
      "Socket closed");
  TransportSecurity tls_only;
  tls_only.ca_file = "ca.pem";
  const ConnectionProblem p = DiagnoseConnection(closed, tls_only);
  EXPECT_EQ(p.kind, ConnectionProblem::kClosed);
  EXPECT_NE(p.hint.find("client certificate"), std::string::npos) << p.hint;
  EXPECT_NE(p.hint.find("--tls_cert"), std::string::npos) << p.hint;
  EXPECT_EQ(p.hint.find("give --tls_ca"), std::string::npos) << p.hint;
  // A plaintext client still hears about --tls_ca; one with a certificate keeps the TLS
  // hint.
  EXPECT_NE(DiagnoseConnection(closed, TransportSecurity()).hint.find("--tls_ca"),
            std::string::npos);
  TransportSecurity mutual = tls_only;
  mutual.cert_file = "cert.pem";
  mutual.key_file = "key.pem";
  EXPECT_EQ(DiagnoseConnection(closed, mutual).hint.find("client certificate"),
            std::string::npos);
}

TEST(DiagnoseConnectionTest, StaysQuietAboutOtherErrors) {
  EXPECT_EQ(DiagnoseConnection(absl::OkStatus()).kind, ConnectionProblem::kNone);
  EXPECT_EQ(DiagnoseConnection(absl::UnauthenticatedError("bad token")).kind,
            ConnectionProblem::kNone);
  EXPECT_EQ(DiagnoseConnection(absl::InvalidArgumentError("Socket closed")).kind,
            ConnectionProblem::kNone);
  EXPECT_TRUE(
      DiagnoseConnection(absl::UnavailableError("learner restarting")).hint.empty());
}

}  // namespace
}  // namespace duet
