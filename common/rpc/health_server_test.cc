#include "common/rpc/health_server.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace duet {
namespace {

class HealthReporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = StartHealthOnlyServer("127.0.0.1:0", &port_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    reporter_.reset();
    server_->Shutdown();
  }
  // What a probe of `service` sees: the status name, or the call's error code.
  std::string Probe(const std::string& service) {
    auto s = CheckHealth(channel_, service, absl::Seconds(10));
    return s.ok() ? *s : std::string(absl::StatusCodeToString(s.status().code()));
  }
  // Moves the clock and returns once the watchdog has looked at the new time (it has
  // begun another wait).
  void AdvanceAndAwaitWatchdog(absl::Duration d) {
    while (clock_.waiters() == 0) std::this_thread::yield();
    const int64_t begun = clock_.waits_begun();
    clock_.Advance(d);
    while (clock_.waits_begun() == begun) std::this_thread::yield();
  }

  FakeClock clock_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<HealthReporter> reporter_;
};

// Readiness is the role's to declare; a probe before that fails (NOT_SERVING), and one of
// a service nobody declared is NOT_FOUND.
TEST_F(HealthReporterTest, ReadinessFollowsTheRoleAndUnknownServicesAreNotFound) {
  EXPECT_EQ(Probe(kReadinessService), "NOT_FOUND");  // no reporter yet: nothing declared
  reporter_ = std::make_unique<HealthReporter>(server_.get(), &clock_, absl::Minutes(30));
  EXPECT_EQ(Probe(""), "SERVING");
  EXPECT_EQ(Probe(kReadinessService), "NOT_SERVING");
  reporter_->SetReady(true);
  EXPECT_EQ(Probe(kReadinessService), "SERVING");
  reporter_->SetReady(false);
  EXPECT_EQ(Probe(kReadinessService), "NOT_SERVING");
  EXPECT_EQ(Probe(""), "SERVING");
  EXPECT_EQ(Probe("duet.something.else"), "NOT_FOUND");
}

// A main loop that stops beating for longer than stall_after turns liveness (and
// readiness) NOT_SERVING at the watchdog's next look, whatever gRPC's own threads do; a
// beat brings both back.
TEST_F(HealthReporterTest, ALoopThatStopsBeatingFailsLivenessUntilItBeatsAgain) {
  reporter_ = std::make_unique<HealthReporter>(server_.get(), &clock_, absl::Minutes(30));
  reporter_->SetReady(true);
  AdvanceAndAwaitWatchdog(absl::Minutes(29));
  reporter_->Beat();
  AdvanceAndAwaitWatchdog(absl::Minutes(29));
  EXPECT_EQ(Probe(""), "SERVING") << "29 min since the last beat, within 30";
  AdvanceAndAwaitWatchdog(absl::Minutes(2));
  EXPECT_FALSE(reporter_->live());
  EXPECT_EQ(Probe(""), "NOT_SERVING");
  EXPECT_EQ(Probe(kReadinessService), "NOT_SERVING");
  reporter_->Beat();
  EXPECT_EQ(Probe(""), "SERVING");
  EXPECT_EQ(Probe(kReadinessService), "SERVING");
}

TEST_F(HealthReporterTest, AZeroStallTimeoutNeverStalls) {
  reporter_ =
      std::make_unique<HealthReporter>(server_.get(), &clock_, absl::ZeroDuration());
  AdvanceAndAwaitWatchdog(absl::Hours(24));
  EXPECT_EQ(Probe(""), "SERVING");
}

}  // namespace
}  // namespace duet
