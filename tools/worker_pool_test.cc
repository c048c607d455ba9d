#include "tools/worker_pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/test_util.h"

namespace duet {
namespace {

int Exited(int code) {
  return code << 8;
}  // a wait status: WIFEXITED, WEXITSTATUS == code
int Killed(int signo) { return signo; }  // a wait status: WIFSIGNALED, WTERMSIG == signo

// Processes on paper: Start hands out pids, Signal records, End makes Poll report.
class FakeLauncher : public WorkerLauncher {
 public:
  absl::StatusOr<pid_t> Start(PoolRole role, const std::string& name, int slot) override {
    if (!fail.ok()) return fail;
    const pid_t pid = next_pid++;
    started.push_back(name);
    slots.push_back(slot);
    role_of[pid] = role;
    return pid;
  }
  void Signal(pid_t pid, int signo) override {
    signals.push_back({pid, signo});
    if (signo == SIGKILL || (signo == SIGTERM && obey_sigterm))
      ended[pid] = signo == SIGKILL ? Killed(9) : Exited(0);
  }
  std::optional<int> Poll(pid_t pid) override {
    auto it = ended.find(pid);
    if (it == ended.end()) return std::nullopt;
    const int status = it->second;
    ended.erase(it);
    return status;
  }
  void End(pid_t pid, int status) { ended[pid] = status; }

  absl::Status fail = absl::OkStatus();
  bool obey_sigterm = false;  // SIGTERM ends the process at once
  pid_t next_pid = 100;
  std::vector<std::string> started;
  std::vector<int> slots;
  std::map<pid_t, PoolRole> role_of;
  std::vector<std::pair<pid_t, int>> signals;
  std::map<pid_t, int> ended;
};

struct PoolTest : ::testing::Test {
  PoolTest()
      : pool(&launcher, &clock,
             [this](const std::string& line) { log.push_back(line); }) {}
  pid_t PidOf(const std::string& name) {
    for (const PoolMember& m : pool.members()) {
      if (m.name == name) return m.pid;
    }
    return -1;
  }
  bool Logged(const std::string& part) {
    for (const std::string& l : log) {
      if (l.find(part) != std::string::npos) return true;
    }
    return false;
  }
  FakeLauncher launcher;
  FakeClock clock;
  std::vector<std::string> log;
  WorkerPool pool;
};

TEST_F(PoolTest, StartsTheDesiredWorkers) {
  auto changed = pool.Reconcile({2, 1}, /*run_over=*/false);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(launcher.started,
            (std::vector<std::string>{"rollout-0", "rollout-1", "scorer-0"}));
  EXPECT_EQ(launcher.slots, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(pool.running(), (PoolCounts{2, 1}));
  // Nothing to do the second time.
  changed = pool.Reconcile({2, 1}, false);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(launcher.started.size(), 3u);
}

TEST_F(PoolTest, ScalesUpThenDownNewestFirstWithSigterm) {
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  ASSERT_TRUE(pool.Reconcile({3, 1}, false).ok());
  EXPECT_EQ(launcher.started, (std::vector<std::string>{"rollout-0", "scorer-0",
                                                        "rollout-1", "rollout-2"}));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  ASSERT_EQ(launcher.signals.size(), 2u);
  EXPECT_EQ(launcher.signals[0], std::make_pair(PidOf("rollout-2"), SIGTERM));
  EXPECT_EQ(launcher.signals[1], std::make_pair(PidOf("rollout-1"), SIGTERM));
  // Leaving workers do not count, and are not signalled twice or replaced.
  EXPECT_EQ(pool.running(), (PoolCounts{1, 1}));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(launcher.signals.size(), 2u);
  EXPECT_EQ(launcher.started.size(), 4u);
  // They leave (exit 0): reaped, not replaced.
  launcher.End(PidOf("rollout-1"), Exited(0));
  launcher.End(PidOf("rollout-2"), Exited(0));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.members().size(), 2u);
  EXPECT_EQ(launcher.started.size(), 4u);
  EXPECT_TRUE(Logged("rollout-2 (pid 103) exited with 0 after leaving the pool"))
      << log.back();
}

TEST_F(PoolTest, ADeadWorkerIsReplacedUnderANewName) {
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  clock.Advance(absl::Minutes(1));  // past the crash window: replaced at once
  launcher.End(PidOf("rollout-1"), Killed(SIGKILL));
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  EXPECT_EQ(launcher.started.back(), "rollout-2");
  EXPECT_EQ(pool.running(), (PoolCounts{2, 1}));
  EXPECT_TRUE(
      Logged("rollout-1 (pid 101) was killed by signal 9, unexpectedly; a replacement "
             "keeps rollout at 2"));
  // A worker that left on its own (an operator's SIGTERM) while the run goes on, too.
  clock.Advance(absl::Minutes(1));
  launcher.End(PidOf("scorer-0"), Exited(0));
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  EXPECT_EQ(launcher.started.back(), "scorer-1");
  EXPECT_TRUE(Logged("left on its own"));
}

TEST_F(PoolTest, WorkersThatKeepCrashingAreRestartedWithBackoff) {
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  launcher.End(PidOf("rollout-0"), Exited(1));  // at once: a crash
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.running(), (PoolCounts{0, 1}));  // waits 1 s
  clock.Advance(absl::Milliseconds(999));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.running().rollout, 0);
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(launcher.started.back(), "rollout-1");
  launcher.End(PidOf("rollout-1"), Exited(1));  // again: 2 s
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  clock.Advance(absl::Milliseconds(1999));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.running().rollout, 0);
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.running().rollout, 1);
  EXPECT_TRUE(Logged("(in 2s)"));
}

TEST_F(PoolTest, NothingStartsOnceTheRunIsOver) {
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  for (const PoolMember& m : pool.members())
    launcher.End(m.pid, Exited(0));  // the shutdown notice
  ASSERT_TRUE(pool.Reconcile({2, 1}, /*run_over=*/true).ok());
  EXPECT_TRUE(pool.members().empty());
  EXPECT_EQ(launcher.started.size(), 3u);
  EXPECT_TRUE(Logged("(the run is over)"));
}

TEST_F(PoolTest, AFailedStartIsAnErrorAndIsTriedAgain) {
  launcher.fail = absl::InternalError("fork failed");
  EXPECT_EQ(pool.Reconcile({1, 1}, false).status().code(), absl::StatusCode::kInternal);
  launcher.fail = absl::OkStatus();
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  EXPECT_EQ(pool.running(), (PoolCounts{1, 1}));
  EXPECT_EQ(launcher.started.front(), "rollout-0");
}

TEST_F(PoolTest, StopAllTermsThenKillsWhatIsLeft) {
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  pool.StopAll(absl::Seconds(5));  // nobody obeys SIGTERM: SIGKILL after 5 s of fake time
  EXPECT_TRUE(pool.members().empty());
  int terms = 0, kills = 0;
  for (auto [pid, signo] : launcher.signals) (signo == SIGTERM ? terms : kills) += 1;
  EXPECT_EQ(terms, 3);
  EXPECT_EQ(kills, 3);
  EXPECT_TRUE(Logged("did not stop within 5s: SIGKILL"));
}

TEST_F(PoolTest, StopAllWaitsForWorkersThatObey) {
  launcher.obey_sigterm = true;
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());
  pool.StopAll(absl::Seconds(5));
  EXPECT_TRUE(pool.members().empty());
  EXPECT_EQ(launcher.signals.size(), 2u);  // SIGTERMs only
}

TEST(PoolCountsTest, JsonRoundTripsAndBadCountsAreRefused) {
  auto c = ParsePoolCounts(PoolCountsToJson({3, 2}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, (PoolCounts{3, 2}));
  for (const char* bad :
       {"", "[]", R"({"rollout":1})", R"({"rollout":1,"scorer":"2"})",
        R"({"rollout":0,"scorer":1})", R"({"rollout":1,"scorer":-1})",
        R"({"rollout":65,"scorer":1})", R"({"rollout":1,"scorer":1,"extra":1})",
        R"({"rollout":1e12,"scorer":1})"}) {
    EXPECT_EQ(ParsePoolCounts(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_NE(ValidatePoolCounts({1, 0}).message().find("scorer workers: 0"),
            std::string::npos);
}

TEST(PoolCountsTest, FileIsWrittenAtomicallyAndReadBack) {
  testing::ScratchDir dir("pool");
  const std::string path = dir.path() + "/pool.json";
  EXPECT_EQ(ReadPoolFile(path).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WritePoolFile(path, {4, 1}).ok());
  auto c = ReadPoolFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, (PoolCounts{4, 1}));
  EXPECT_EQ(WritePoolFile(path, {0, 1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadPoolFile(path)->rollout, 4);  // unchanged
}

TEST(PoolStatusTest, RoundTrips) {
  testing::ScratchDir dir("pool");
  FakeLauncher launcher;
  FakeClock clock;
  WorkerPool pool(&launcher, &clock, [](const std::string&) {});
  ASSERT_TRUE(pool.Reconcile({2, 1}, false).ok());
  ASSERT_TRUE(pool.Reconcile({1, 1}, false).ok());  // rollout-1 leaving
  const std::string path = dir.path() + "/pool_status.json";
  ASSERT_TRUE(WriteFileAtomically(path, PoolStatusJson(4242, {1, 1}, pool)).ok());
  auto s = ReadPoolStatus(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->controller, 4242);
  EXPECT_EQ(s->desired, (PoolCounts{1, 1}));
  EXPECT_EQ(s->running, (PoolCounts{1, 1}));
  EXPECT_EQ(ReadPoolStatus(dir.path() + "/none.json").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(path, "{}").ok());
  EXPECT_EQ(ReadPoolStatus(path).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace duet
