#include "rpc/rpc_util.h"

#include <gtest/gtest.h>

namespace duet {
namespace {

// The messages gRPC 1.51 gives a client in each case (seen with the real binaries).
TEST(DiagnoseConnectionTest, NamesTheLikelyCause) {
  EXPECT_EQ(DiagnoseConnection(absl::UnavailableError(
                                   "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4: "
                                   "Ssl handshake failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate "
                                   "verify failed"))
                .kind,
            ConnectionProblem::kTls);
  const ConnectionProblem closed = DiagnoseConnection(absl::UnavailableError(
      "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:4: Socket closed"));
  EXPECT_EQ(closed.kind, ConnectionProblem::kClosed);
  EXPECT_NE(closed.hint.find("--tls_ca"), std::string::npos);
  EXPECT_EQ(DiagnoseConnection(absl::UnavailableError("failed to connect to all addresses; last error: UNKNOWN: "
                                                      "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                                                      "Connection refused"))
                .kind,
            ConnectionProblem::kRefused);
  EXPECT_EQ(DiagnoseConnection(absl::UnavailableError("DNS resolution failed for nosuchhost:1")).kind,
            ConnectionProblem::kUnresolved);
}

TEST(DiagnoseConnectionTest, StaysQuietAboutOtherErrors) {
  EXPECT_EQ(DiagnoseConnection(absl::OkStatus()).kind, ConnectionProblem::kNone);
  EXPECT_EQ(DiagnoseConnection(absl::UnauthenticatedError("bad token")).kind, ConnectionProblem::kNone);
  EXPECT_EQ(DiagnoseConnection(absl::InvalidArgumentError("Socket closed")).kind, ConnectionProblem::kNone);
  EXPECT_TRUE(DiagnoseConnection(absl::UnavailableError("learner restarting")).hint.empty());
}

}  // namespace
}  // namespace duet
