#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/file_util.h"
#include "common/metrics/catalogue.h"
#include "common/metrics/metrics_server.h"

namespace duet::metrics {
namespace {

std::string Text(Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

// Sends `request` as is and returns everything the server answers before it closes.
std::string HttpRaw(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fd);
  return out;
}

std::string HttpGet(int port, const std::string& path) {
  return HttpRaw(port, "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
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
  EXPECT_NE(text.find(R"(duet_rpc_server_handled_total{code="OK",method="PullWork"} 0)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("RESOURCE_EXHAUSTED"), std::string::npos);
  rpc.Record("PullWork", 0, 0.002);
  rpc.Record("PullWork", 8, 0.001);
  rpc.Record("PullWork", 8, 0.001);
  rpc.Record("Check", 0, 0.001);  // health checks are not counted
  text = Text(r);
  EXPECT_NE(text.find(R"(duet_rpc_server_handled_total{code="OK",method="PullWork"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          R"(duet_rpc_server_handled_total{code="RESOURCE_EXHAUSTED",method="PullWork"} 2)"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(duet_rpc_server_handling_seconds_count{method="PullWork"} 3)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("Check"), std::string::npos) << text;
  EXPECT_EQ(rpc.Handled("Check", 0), nullptr);
}

TEST(CatalogueTest, EveryRoleAndDirectionExistsFromStartUp) {
  Registry r;
  LearnerMetrics learner(r);
  CoordinatorMetrics coordinator(r);
  WeightsMetrics weights(r);
  const std::string text = Text(r);
  for (const char* s :
       {R"(duet_learner_samples_total{direction="generation"} 0)",
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
  EXPECT_NE(body.find("duet_process_start_time_seconds{role=\"rollout\"} 1"),
            std::string::npos)
      << body;
  // The hook ran before the registry was read: the served value is the hook's.
  EXPECT_EQ(runs.load(), 1);
  EXPECT_NE(body.find("duet_worker_busy_ratio 0.25"), std::string::npos) << body;
}

TEST(MetricsServerTest, AnswersOnlyGetOfMetricsAndClosesEachConnection) {
  auto registry = std::make_shared<Registry>();
  RegisterProcessMetrics(*registry, "scorer");
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const std::string ok =
      HttpRaw(port, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << ok;
  EXPECT_NE(ok.find("Connection: close"), std::string::npos) << ok;
  const size_t body_at = ok.find("\r\n\r\n") + 4;
  EXPECT_NE(ok.find("Content-Length: " + std::to_string(ok.size() - body_at) + "\r\n"),
            std::string::npos)
      << ok;
  const std::string head = HttpRaw(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_EQ(head.find("duet_build_info"), std::string::npos) << head;
  EXPECT_EQ(HttpGet(port, "/").rfind("HTTP/1.1 404 ", 0), 0u);
  EXPECT_EQ(HttpGet(port, "/metricsx").rfind("HTTP/1.1 404 ", 0), 0u);
  EXPECT_EQ(HttpRaw(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .rfind("HTTP/1.1 405 ", 0),
            0u);
  EXPECT_EQ(HttpRaw(port, "garbage\r\n\r\n").rfind("HTTP/1.1 400 ", 0), 0u);
  EXPECT_EQ(
      HttpRaw(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n")
          .rfind("HTTP/1.1 431 ", 0),
      0u);
  // A client that connects and says nothing does not stop the others being served.
  const int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(HttpGet(port, "/metrics").rfind("HTTP/1.1 200 OK", 0), 0u);
  close(idle);
}

TEST(MetricsServerTest, StopsWhileAClientHoldsAConnection) {
  auto registry = std::make_shared<Registry>();
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((*server)->port());
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  (void)!write(idle, "GET /met", 8);  // half a request: the server waits for the rest
  const auto t0 = std::chrono::steady_clock::now();
  server->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  close(idle);
}

// A FakeClock that counts its reads, so that a test can wait until the server has read
// the time and gone idle in poll() before it moves the time on.
class ReadCountingClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    ++reads_;
    return fake_.Now();
  }
  void SleepFor(absl::Duration duration) override { fake_.SleepFor(duration); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                         absl::Time deadline) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return fake_.AwaitWithDeadline(mu, condition, deadline);
  }
  void Advance(absl::Duration duration) { fake_.Advance(duration); }
  // Returns once Now() has been called at least `n` times.
  void AwaitReads(int n) const {
    std::pair<const int*, int> args(&reads_, n);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::pair<const int*, int>* a) { return *a->first >= a->second; }, &args));
  }

 private:
  FakeClock fake_;
  mutable absl::Mutex mu_;  // guards reads_
  mutable int reads_ ABSL_GUARDED_BY(mu_) = 0;
};

// Prometheus scrapes every 15 s (deploy/prometheus/prometheus.yml), so the server is idle
// far longer than its 5 s client timeout between two scrapes. A scrape after any idle
// time is answered: the client's deadline counts from its accept, not from the time the
// server read before it went idle (that stale deadline closed every scrape unanswered).
TEST(MetricsServerTest, AnswersAScrapeAfterIdlingLongerThanTheScrapeInterval) {
  auto registry = std::make_shared<Registry>();
  RegisterProcessMetrics(*registry, "learner");
  ReadCountingClock clock;
  auto server = MetricsServer::Start("127.0.0.1:0", registry, &clock);
  ASSERT_TRUE(server.ok()) << server.status();
  // The server has read the time once and waits in poll() for a client.
  clock.AwaitReads(1);
  for (int scrape = 0; scrape < 3; ++scrape) {
    clock.Advance(absl::Seconds(60));  // longer than the longest shipped scrape interval
    const std::string body = HttpGet((*server)->port(), "/metrics");
    EXPECT_EQ(body.rfind("HTTP/1.1 200 OK\r\n", 0), 0u)
        << "scrape " << scrape << ": " << body;
    EXPECT_NE(body.find(R"(duet_build_info{revision=")"), std::string::npos)
        << "scrape " << scrape << ": " << body;
  }
}

TEST(MetricsServerTest, RefusesBadAndTakenAddresses) {
  auto registry = std::make_shared<Registry>();
  EXPECT_EQ(MetricsServer::Start("", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsServer::Start("127.0.0.1", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsServer::Start("127.0.0.1:99999", registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto first = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok());
  auto second =
      MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()), registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(MetricsServerTest, WritesTheBoundPortToThePortFile) {
  // Port 0 as deploy/slurm/ passes it: the file names the port the kernel picked, and
  // that port answers /metrics by the time the file exists.
  auto registry = std::make_shared<Registry>();
  RegisterProcessMetrics(*registry, "rollout");
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string dir =
      testing::TempDir() + "metrics_port_file_" + std::to_string(getpid());
  ASSERT_TRUE(MakeDirs(dir).ok());
  const std::string path = JoinPath(dir, "rollout.metrics_port");
  ASSERT_TRUE((*server)->WritePortFile(path).ok());
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, std::to_string((*server)->port()) + "\n");
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port)) << *text;
  EXPECT_GT(port, 0);
  const std::string body = HttpGet(port, "/metrics");
  EXPECT_EQ(body.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << body;
  EXPECT_NE(body.find(R"(role="rollout")"), std::string::npos) << body;
  // Written through a temporary file renamed over it: nothing else is left in the folder.
  std::vector<std::string> left;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
        left.push_back(e->d_name);
    }
    closedir(d);
  }
  EXPECT_EQ(left, std::vector<std::string>{"rollout.metrics_port"});
  // A second server on port 0 names a different port (two jobs on one node do not
  // collide).
  auto other = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->WritePortFile(path).ok());
  text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, std::to_string((*other)->port()) + "\n");
  EXPECT_NE((*other)->port(), (*server)->port());
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST(MetricsServerTest, WritePortFileFailsForAMissingFolder) {
  auto server = MetricsServer::Start("127.0.0.1:0", std::make_shared<Registry>());
  ASSERT_TRUE(server.ok()) << server.status();
  const absl::Status s =
      (*server)->WritePortFile(testing::TempDir() + "no/such/folder/metrics_port");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

// The value of the unlabelled series `name` in a scrape; NaN when absent.
double Value(const std::string& scrape, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    double v = 0;
    if (f.size() == 2 && f[0] == name && absl::SimpleAtod(f[1], &v)) return v;
  }
  return std::nan("");
}

// Every process that serves /metrics serves its own resource use, read from the real
// /proc at each scrape: descriptors this test opens show up in the next scrape.
TEST(ProcessCollectorTest, EveryScrapeServesThisProcesssResourceUse) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto server = MetricsServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string before = HttpGet((*server)->port(), "/metrics");
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_GT(Value(before, "process_resident_memory_bytes"), 1 << 20) << before;
  EXPECT_GE(Value(before, "process_virtual_memory_bytes"),
            Value(before, "process_resident_memory_bytes"));
  EXPECT_GT(Value(before, "process_cpu_seconds_total"), 0.0);
  EXPECT_GT(Value(before, "process_max_fds"), 0.0);
  // This process started within the last hour (and not in the future: 2 s for rounding
  // of boot time and ticks).
  EXPECT_LE(Value(before, "process_start_time_seconds"), now + 2);
  EXPECT_GT(Value(before, "process_start_time_seconds"), now - 3600);
  EXPECT_NE(before.find("# TYPE process_cpu_seconds_total counter"), std::string::npos);
  std::vector<int> fds;
  for (int i = 0; i < 10; ++i) fds.push_back(open("/dev/null", O_RDONLY));
  const std::string after = HttpGet((*server)->port(), "/metrics");
  for (int fd : fds) close(fd);
  EXPECT_EQ(Value(after, "process_open_fds") - Value(before, "process_open_fds"), 10.0)
      << before << after;
}

}  // namespace
}  // namespace duet::metrics
