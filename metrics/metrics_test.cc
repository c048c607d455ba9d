#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "metrics/catalogue.h"
#include "metrics/metrics_server.h"

namespace duet::metrics {
namespace {

std::string Text(Registry& r) { return prometheus::TextSerializer().Serialize(r.Collect()); }

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

TEST(CodeNameTest, SpellsGrpcCodes) {
  EXPECT_EQ(CodeName(0), "OK");
  EXPECT_EQ(CodeName(4), "DEADLINE_EXCEEDED");
  EXPECT_EQ(CodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(CodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(CodeName(17), "UNKNOWN");
  EXPECT_EQ(CodeName(-1), "UNKNOWN");
}

TEST(RpcMetricsTest, CreatesOkAtStartAndCountsCodesOfKnownMethodsOnly) {
  Registry r;
  RpcMetrics rpc(r, RpcMetrics::Side::kServer, {"PullWork", "CompleteWork"});
  std::string text = Text(r);
  EXPECT_NE(text.find(R"(duet_rpc_server_handled_total{code="OK",method="PullWork"} 0)"), std::string::npos) << text;
  EXPECT_EQ(text.find("RESOURCE_EXHAUSTED"), std::string::npos);
  rpc.Record("PullWork", 0, 0.002);
  rpc.Record("PullWork", 8, 0.001);
  rpc.Record("PullWork", 8, 0.001);
  rpc.Record("Check", 0, 0.001);  // health checks are not counted
  text = Text(r);
  EXPECT_NE(text.find(R"(duet_rpc_server_handled_total{code="OK",method="PullWork"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(duet_rpc_server_handled_total{code="RESOURCE_EXHAUSTED",method="PullWork"} 2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(duet_rpc_server_handling_seconds_count{method="PullWork"} 3)"), std::string::npos) << text;
  EXPECT_EQ(text.find("Check"), std::string::npos) << text;
  EXPECT_EQ(rpc.Handled("Check", 0), nullptr);
}

TEST(CatalogueTest, EveryRoleAndDirectionExistsFromStartUp) {
  Registry r;
  LearnerMetrics learner(r);
  CoordinatorMetrics coordinator(r);
  WeightsMetrics weights(r);
  const std::string text = Text(r);
  for (const char* s : {R"(duet_learner_samples_total{direction="generation"} 0)",
                        R"(duet_learner_samples_total{direction="understanding"} 0)",
                        R"(duet_learner_step_duration_seconds_count{phase="checkpoint"} 0)",
                        R"(duet_coordinator_live_workers{role="rollout"} 0)",
                        R"(duet_pool_desired_workers{role="scorer"} 0)",
                        R"(duet_weights_broadcast_failures_total{code="DATA_LOSS"} 0)",
                        R"(duet_weights_bootstrap_fetches_total{code="OK"} 0)",
                        R"(duet_coordinator_item_wait_seconds_bucket{role="scorer",le="300"} 0)"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s;
  }
  // The last-step and checkpoint timestamps start at the start time (the stall alert).
  EXPECT_GT(learner.last_step_timestamp->Value(), 1.6e9);
  EXPECT_GT(learner.checkpoint_timestamp->Value(), 1.6e9);
}

TEST(MetricsServerTest, ServesRegistryAfterRunningHooks) {
  auto registry = std::make_shared<Registry>();
  RegisterProcessMetrics(*registry, "rollout");
  WorkerMetrics worker(*registry);
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  std::atomic<int> runs{0};
  (*server)->AddRefreshHook([&] { worker.busy_ratio->Set(0.25 + runs++); });
  const std::string body = HttpGet((*server)->port(), "/metrics");
  EXPECT_NE(body.find("200 OK"), std::string::npos) << body;
  EXPECT_NE(body.find(R"(duet_build_info{revision=")"), std::string::npos) << body;
  EXPECT_NE(body.find(R"(role="rollout")"), std::string::npos) << body;
  EXPECT_NE(body.find("duet_process_start_time_seconds{role=\"rollout\"} 1"), std::string::npos) << body;
  // The hook ran before the registry was read: the served value is the hook's.
  EXPECT_EQ(runs.load(), 1);
  EXPECT_NE(body.find("duet_worker_busy_ratio 0.25"), std::string::npos) << body;
}

TEST(MetricsServerTest, RefusesBadAndTakenAddresses) {
  auto registry = std::make_shared<Registry>();
  EXPECT_EQ(MetricsServer::Start("", registry).status().code(), absl::StatusCode::kInvalidArgument);
  auto first = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok());
  auto second = MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()), registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace duet::metrics
