#include "learner/service/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/clock.h"

namespace duet {
namespace {

constexpr absl::Duration kNoWait = absl::ZeroDuration();

// Spins (no sleep) until `n` callers are blocked in the fake clock.
void WaitForWaiters(const FakeClock& clock, int n) {
  while (clock.waiters() < n) std::this_thread::yield();
}

v1::WorkItem ScoreItem(int64_t policy_version) {
  v1::WorkItem item;
  item.set_policy_version(policy_version);
  item.mutable_score()->add_queries()->set_task(v1::TASK_GENERATION);
  return item;
}

v1::CompleteWorkRequest ScoreResult(const std::string& worker_id,
                                    const std::string& item_id, double reward) {
  v1::CompleteWorkRequest r;
  r.set_worker_id(worker_id);
  r.set_item_id(item_id);
  r.mutable_score()->add_rewards(reward);
  return r;
}

class WorkQueueTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  WorkQueue queue_{"run7", &clock_};
};

// Defect 12 of the hardening issue: a process named rollout-0 registered as rollout-1.
TEST_F(WorkQueueTest, IdsFollowTheWorkersNames) {
  EXPECT_EQ(queue_.Register(v1::ROLE_SCORER, "scorer-0", 1)->id, "scorer-0");
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "rollout-1", 1)->id, "rollout-1");
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "rollout-0", 1)->id, "rollout-0");
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "node7:123", 1)->id, "node7:123");
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "rollout-0", 1)->id,
            "rollout-0-2");  // taken
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "a b/c", 1)->id,
            "rollout-0-3");  // unusable; fallback and -2 taken
  EXPECT_EQ(queue_.Register(v1::ROLE_ROLLOUT, "", 1)->id, "rollout-1-2");
}

TEST(WorkQueueLimitsTest, RegistrationsPastTheLimitAreResourceExhausted) {
  FakeClock clock;
  WorkQueue queue("run", &clock, /*max_workers=*/3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue.Register(v1::ROLE_ROLLOUT, "", 1).ok());
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(queue.Register(v1::ROLE_SCORER, "", 1).status().code(),
              absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(queue.Workers().size(), 3u);
}

TEST_F(WorkQueueTest, ItemsNobodyAwaitsAnyMoreAreDroppedAndLateResultsRefused) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string pulled = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  const std::string queued = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_EQ((*queue_.Pull(w, kNoWait))->item_id(), pulled);
  EXPECT_EQ(queue_.items_held(), 2);
  std::thread waiter([&] {
    EXPECT_EQ(queue_.Await({pulled, queued}, absl::Seconds(5)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  });
  WaitForWaiters(clock_, 1);
  clock_.Advance(absl::Seconds(6));
  waiter.join();
  EXPECT_EQ(queue_.items_held(), 0);
  EXPECT_EQ(queue_.Complete(ScoreResult(w, pulled, 1.0)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(queue_.Pull(w, kNoWait)->has_value());  // the queued one is gone too
  EXPECT_EQ(queue_.items_held(), 0);
}

TEST_F(WorkQueueTest, RegisterGivesIdsAndRanks) {
  WorkerRecord r0 = *queue_.Register(v1::ROLE_ROLLOUT, "", 16);
  WorkerRecord s0 = *queue_.Register(v1::ROLE_SCORER, "", 8);
  WorkerRecord r1 = *queue_.Register(v1::ROLE_ROLLOUT, "", 4);
  EXPECT_EQ(r0.id, "rollout-0");
  EXPECT_EQ(r1.id, "rollout-1");
  EXPECT_EQ(s0.id, "scorer-0");
  // No collective seat until the learner forms a broadcast epoch (SetRanks).
  EXPECT_EQ(r0.rank, -1);
  EXPECT_EQ(s0.rank, -1);
  queue_.SetRanks({{r1.id, 1}, {s0.id, 2}});
  std::map<std::string, int32_t> ranks;
  for (const auto& w : queue_.Workers()) ranks[w.id] = w.rank;
  EXPECT_EQ(ranks, (std::map<std::string, int32_t>{
                       {"rollout-0", -1}, {"rollout-1", 1}, {"scorer-0", 2}}));
  EXPECT_EQ(r0.role, v1::ROLE_ROLLOUT);
  EXPECT_EQ(r0.name, "");
  EXPECT_EQ(r0.capacity, 16);

  EXPECT_EQ(queue_.CountWorkers(v1::ROLE_ROLLOUT), 2);
  EXPECT_EQ(queue_.CountWorkers(v1::ROLE_SCORER), 1);
  std::vector<WorkerRecord> all = queue_.Workers();
  ASSERT_EQ(all.size(), 3u);
  std::set<std::string> ids;
  for (const auto& w : all) ids.insert(w.id);
  EXPECT_EQ(ids, (std::set<std::string>{"rollout-0", "rollout-1", "scorer-0"}));
}

TEST_F(WorkQueueTest, SubmitPullCompleteAwaitRoundTrip) {
  const std::string scorer = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string rollout = queue_.Register(v1::ROLE_ROLLOUT, "r", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(/*policy_version=*/3));
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(id.rfind("run7", 0), 0u) << id;  // ids carry the run id

  // A worker of another role does not get it.
  auto none = queue_.Pull(rollout, kNoWait);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  auto pulled = queue_.Pull(scorer, kNoWait);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  ASSERT_TRUE(pulled->has_value());
  EXPECT_EQ((*pulled)->item_id(), id);
  EXPECT_EQ((*pulled)->policy_version(), 3);
  EXPECT_TRUE((*pulled)->has_score());
  // Pulled once only: another scorer finds nothing, and the holder may not pull a
  // second item before it completes this one (backpressure).
  const std::string other_scorer = queue_.Register(v1::ROLE_SCORER, "s2", 1)->id;
  auto again = queue_.Pull(other_scorer, kNoWait);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto second = queue_.Pull(scorer, kNoWait);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted)
      << second.status();

  EXPECT_TRUE(queue_.Complete(ScoreResult(scorer, id, 0.75)).ok());
  auto results = queue_.Await({id}, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].item_id(), id);
  EXPECT_EQ((*results)[0].score().rewards(0), 0.75);
}

TEST_F(WorkQueueTest, ItemIdsAreUniqueAndResultsComeBackInRequestOrder) {
  std::vector<std::string> workers;
  for (int i = 0; i < 3; ++i)
    workers.push_back(queue_.Register(v1::ROLE_SCORER, "s", 1)->id);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(queue_.Submit(v1::ROLE_SCORER, ScoreItem(0)));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 3u);
  // Oldest first.
  std::vector<std::string> pulled;
  for (int i = 0; i < 3; ++i)
    pulled.push_back((*queue_.Pull(workers[i], kNoWait))->item_id());
  EXPECT_EQ(pulled, ids);
  // Completed in reverse; awaited in order.
  for (int i = 2; i >= 0; --i)
    ASSERT_TRUE(queue_.Complete(ScoreResult(workers[i], ids[i], i)).ok());
  auto results = queue_.Await(ids, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*results)[i].item_id(), ids[i]);
    EXPECT_EQ((*results)[i].score().rewards(0), i);
  }
}

TEST_F(WorkQueueTest, AddressedItemsGoOnlyToTheirWorker) {
  const std::string r0 = queue_.Register(v1::ROLE_ROLLOUT, "a", 1)->id;
  const std::string r1 = queue_.Register(v1::ROLE_ROLLOUT, "b", 1)->id;
  v1::WorkItem sync;
  sync.mutable_sync()->set_version(4);
  const std::string id = queue_.Submit(v1::ROLE_ROLLOUT, sync, r1);

  auto other = queue_.Pull(r0, kNoWait);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value()) << "rollout-0 got an item addressed to rollout-1";

  auto mine = queue_.Pull(r1, kNoWait);
  ASSERT_TRUE(mine.ok());
  ASSERT_TRUE(mine->has_value());
  EXPECT_EQ((*mine)->item_id(), id);
  EXPECT_EQ((*mine)->sync().version(), 4);
}

TEST_F(WorkQueueTest, AddressedItemsComeBeforeOlderRoleItems) {
  const std::string r0 = queue_.Register(v1::ROLE_ROLLOUT, "a", 1)->id;
  const std::string work = queue_.Submit(v1::ROLE_ROLLOUT, ScoreItem(0));
  v1::WorkItem sync;
  sync.mutable_sync()->set_version(1);
  const std::string sync_id = queue_.Submit(v1::ROLE_ROLLOUT, sync, r0);
  EXPECT_EQ((*queue_.Pull(r0, kNoWait))->item_id(), sync_id);
  v1::CompleteWorkRequest synced;
  synced.set_worker_id(r0);
  synced.set_item_id(sync_id);
  synced.mutable_sync()->set_version(1);
  ASSERT_TRUE(queue_.Complete(synced).ok());
  EXPECT_EQ((*queue_.Pull(r0, kNoWait))->item_id(), work);
}

TEST_F(WorkQueueTest, PullsBeyondAWorkersShareAreResourceExhaustedAndChangeNothing) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string first = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  const std::string second = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_EQ((*queue_.Pull(w, kNoWait))->item_id(), first);
  // Holding an item: a second pull is refused and the next item stays queued.
  auto refused = queue_.Pull(w, kNoWait);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  EXPECT_EQ(queue_.items_held(), 2);
  ASSERT_TRUE(queue_.Complete(ScoreResult(w, first, 1.0)).ok());
  ASSERT_EQ((*queue_.Pull(w, kNoWait))->item_id(), second);
  ASSERT_TRUE(queue_.Complete(ScoreResult(w, second, 1.0)).ok());

  // A second concurrent long-poll by the same worker is refused while the first waits;
  // the first still gets the next item.
  std::optional<absl::StatusOr<std::optional<v1::WorkItem>>> waiting;
  std::thread poller([&] { waiting = queue_.Pull(w, absl::Seconds(30)); });
  WaitForWaiters(clock_, 1);
  auto concurrent = queue_.Pull(w, kNoWait);
  EXPECT_EQ(concurrent.status().code(), absl::StatusCode::kResourceExhausted)
      << concurrent.status();
  const std::string third = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  poller.join();
  ASSERT_TRUE(waiting.has_value() && waiting->ok());
  ASSERT_TRUE(waiting->value().has_value());
  EXPECT_EQ(waiting->value()->item_id(), third);
}

TEST_F(WorkQueueTest, CompleteTwiceCountsOnce) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());
  EXPECT_TRUE(queue_.Complete(ScoreResult(w, id, 1.0)).ok());
  EXPECT_EQ(queue_.Complete(ScoreResult(w, id, 2.0)).code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(queue_.Workers().size(), 1u);
  EXPECT_EQ(queue_.Workers()[0].items_completed, 1);
  auto results = queue_.Await({id}, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].score().rewards(0), 1.0);  // the first result is kept
}

TEST_F(WorkQueueTest, CompletingUnknownOrUnpulledItemsIsRefused) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  EXPECT_FALSE(queue_.Complete(ScoreResult(w, "run7-999", 1.0)).ok());
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  EXPECT_FALSE(queue_.Complete(ScoreResult(w, id, 1.0)).ok())
      << "completed before anyone pulled it";
  EXPECT_EQ(queue_.Workers()[0].items_completed, 0);
}

// The conventions' trust boundary: "the caller owns the item it completes".
TEST_F(WorkQueueTest, CompletingAnotherWorkersItemIsRefused) {
  const std::string a = queue_.Register(v1::ROLE_SCORER, "a", 1)->id;
  const std::string b = queue_.Register(v1::ROLE_SCORER, "b", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(a, kNoWait)->has_value());
  EXPECT_EQ(queue_.Complete(ScoreResult(b, id, 9.0)).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(queue_.Complete(ScoreResult(a, id, 1.0)).ok());
}

TEST_F(WorkQueueTest, AResultTheCheckRefusesLeavesTheItemOpenForACorrectOne) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());
  int checked = 0;
  auto check = [&checked](const v1::WorkItem& item, const v1::CompleteWorkRequest& r) {
    ++checked;
    EXPECT_TRUE(item.has_score());
    return r.score().rewards(0) < 0 ? absl::InvalidArgumentError("negative")
                                    : absl::OkStatus();
  };
  EXPECT_EQ(queue_.Complete(ScoreResult(w, id, -1.0), check).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(queue_.Complete(ScoreResult(w, id, 0.5), check).ok());
  EXPECT_EQ(checked, 2);
  auto results = queue_.Await({id}, absl::ZeroDuration());
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].score().rewards(0), 0.5);
}

TEST_F(WorkQueueTest, SyncResultsRecordTheConfirmedVersion) {
  const std::string w = queue_.Register(v1::ROLE_ROLLOUT, "r", 1)->id;
  v1::WorkItem sync;
  sync.mutable_sync()->set_version(6);
  const std::string id = queue_.Submit(v1::ROLE_ROLLOUT, sync, w);
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());
  v1::CompleteWorkRequest done;
  done.set_worker_id(w);
  done.set_item_id(id);
  done.mutable_sync()->set_version(6);
  done.mutable_sync()->set_checksum(0xABCDEF);
  ASSERT_TRUE(queue_.Complete(done).ok());
  const WorkerRecord rec = queue_.Workers()[0];
  EXPECT_EQ(rec.confirmed_version, 6);
  EXPECT_EQ(rec.confirmed_checksum, 0xABCDEFu);
}

TEST_F(WorkQueueTest, UnknownWorkerPullIsNotFound) {
  auto r = queue_.Pull("rollout-42", kNoWait);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(WorkQueueTest, PullWaitsForASubmit) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  absl::StatusOr<std::optional<v1::WorkItem>> result;
  std::thread puller([&] { result = queue_.Pull(w, absl::Seconds(30)); });
  WaitForWaiters(clock_, 1);
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(2));
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->has_value());
  EXPECT_EQ((*result)->item_id(), id);
}

TEST_F(WorkQueueTest, PullTimesOutEmptyOnTheFakeClock) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  absl::StatusOr<std::optional<v1::WorkItem>> result;
  std::atomic<bool> done{false};
  std::thread puller([&] {
    result = queue_.Pull(w, absl::Seconds(10));
    done = true;
  });
  WaitForWaiters(clock_, 1);
  clock_.Advance(absl::Seconds(9));
  EXPECT_FALSE(done.load());
  clock_.Advance(absl::Seconds(2));
  puller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->has_value());
}

// ---- PullAsync: the coordinator's long-poll, answered by one dispatcher thread. ----

// What one PullAsync gets, and when.
struct AsyncPull {
  absl::Notification done;
  absl::StatusOr<std::optional<v1::WorkItem>> result = absl::UnknownError("not answered");
  std::thread::id answered_on;

  WorkQueue::PullDone Callback() {
    return [this](absl::StatusOr<std::optional<v1::WorkItem>> r) {
      ASSERT_FALSE(done.HasBeenNotified()) << "answered twice";
      result = std::move(r);
      answered_on = std::this_thread::get_id();
      done.Notify();
    };
  }
};

TEST_F(WorkQueueTest, PullAsyncAnswersAtOnceOnTheCallersThreadWhenItCan) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  AsyncPull empty;
  queue_.PullAsync(w, kNoWait, empty.Callback());  // nothing queued, no wait
  ASSERT_TRUE(empty.done.HasBeenNotified());
  ASSERT_TRUE(empty.result.ok()) << empty.result.status();
  EXPECT_FALSE(empty.result->has_value());
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  AsyncPull item;
  queue_.PullAsync(w, absl::Seconds(10), item.Callback());  // queued: no wait
  ASSERT_TRUE(item.done.HasBeenNotified());
  EXPECT_EQ(item.answered_on, std::this_thread::get_id());
  ASSERT_TRUE(item.result.ok() && item.result->has_value());
  EXPECT_EQ((*item.result)->item_id(), id);
  AsyncPull unknown;
  queue_.PullAsync("nobody", absl::Seconds(10), unknown.Callback());
  EXPECT_EQ(unknown.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(queue_.waiting_pulls(), 0);
}

// Several workers wait with no thread of theirs; each item goes to one of them, oldest
// first, and a second pull by a waiting worker is refused as with Pull.
TEST_F(WorkQueueTest, PullAsyncWaitsWithoutAThreadAndEachItemGoesToOneWaiter) {
  constexpr int kWorkers = 50;
  std::vector<std::string> ids;
  std::vector<AsyncPull> pulls(kWorkers);
  for (int i = 0; i < kWorkers; ++i) {
    ids.push_back(queue_.Register(v1::ROLE_SCORER, absl::StrCat("s", i), 1)->id);
    queue_.PullAsync(ids[i], absl::Seconds(10), pulls[i].Callback());
  }
  EXPECT_EQ(queue_.waiting_pulls(), kWorkers);
  for (const AsyncPull& p : pulls) EXPECT_FALSE(p.done.HasBeenNotified());
  AsyncPull second;
  queue_.PullAsync(ids[0], absl::Seconds(10), second.Callback());
  EXPECT_EQ(second.result.status().code(), absl::StatusCode::kResourceExhausted);

  const std::string a = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  const std::string b = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  pulls[0].done.WaitForNotification();
  pulls[1].done.WaitForNotification();
  EXPECT_NE(pulls[0].answered_on, std::this_thread::get_id());  // the dispatcher
  EXPECT_EQ((*pulls[0].result)->item_id(), a);
  EXPECT_EQ((*pulls[1].result)->item_id(), b);
  while (queue_.waiting_pulls() != kWorkers - 2) std::this_thread::yield();
  for (int i = 2; i < kWorkers; ++i) EXPECT_FALSE(pulls[i].done.HasBeenNotified()) << i;

  // Their time runs out on the fake clock: each gets "nothing", not an error.
  clock_.Advance(absl::Seconds(11));
  for (int i = 2; i < kWorkers; ++i) {
    pulls[i].done.WaitForNotification();
    ASSERT_TRUE(pulls[i].result.ok()) << pulls[i].result.status();
    EXPECT_FALSE(pulls[i].result->has_value());
  }
  EXPECT_EQ(queue_.waiting_pulls(), 0);
}

TEST_F(WorkQueueTest, PullAsyncEndsWhenTheWorkerLeavesOrTheRunCloses) {
  const std::string leaving = queue_.Register(v1::ROLE_SCORER, "leaving", 1)->id;
  const std::string staying = queue_.Register(v1::ROLE_SCORER, "staying", 1)->id;
  AsyncPull left, closed;
  queue_.PullAsync(leaving, absl::Hours(1), left.Callback());
  queue_.PullAsync(staying, absl::Hours(1), closed.Callback());
  ASSERT_TRUE(queue_.Deregister(leaving).ok());
  left.done.WaitForNotification();
  EXPECT_EQ(left.result.status().code(), absl::StatusCode::kNotFound)
      << left.result.status();
  EXPECT_FALSE(closed.done.HasBeenNotified());
  queue_.Close();
  closed.done.WaitForNotification();
  EXPECT_EQ(closed.result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(queue_.AwaitShutdownNoticed(kNoWait));  // "staying" was told
}

TEST(WorkQueueAsyncTest, DestroyingTheQueueAnswersTheWaitingPulls) {
  FakeClock clock;
  AsyncPull pull;
  {
    WorkQueue queue("run", &clock);
    const std::string w = queue.Register(v1::ROLE_ROLLOUT, "r", 1)->id;
    queue.PullAsync(w, absl::Hours(1), pull.Callback());
    EXPECT_FALSE(pull.done.HasBeenNotified());
  }
  ASSERT_TRUE(pull.done.HasBeenNotified());
  EXPECT_EQ(pull.result.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(WorkQueueTest, AwaitTimesOutWithDeadlineExceeded) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());
  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> result;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    result = queue_.Await({id}, absl::Seconds(5));
    done = true;
  });
  WaitForWaiters(clock_, 1);
  const int64_t begun = clock_.waits_begun();
  clock_.Advance(absl::Seconds(4));
  // Advance wakes the waiter to re-check its deadline (Await waits in expiry slices): it
  // waits again, or returns, which would be the defect. Checking waiters() at once raced
  // with it leaving the old wait.
  while (clock_.waits_begun() == begun && !done.load()) std::this_thread::yield();
  EXPECT_FALSE(done.load()) << "returned before the timeout";
  EXPECT_EQ(clock_.waiters(), 1);
  clock_.Advance(absl::Seconds(2));
  waiter.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded)
      << result.status();
}

TEST_F(WorkQueueTest, AwaitWakesWhenTheLastResultArrives) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string w2 = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string a = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  const std::string b = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());
  ASSERT_TRUE(queue_.Pull(w2, kNoWait)->has_value());
  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> result;
  std::thread waiter([&] { result = queue_.Await({a, b}, absl::Hours(1)); });
  WaitForWaiters(clock_, 1);
  ASSERT_TRUE(queue_.Complete(ScoreResult(w2, b, 2.0)).ok());
  ASSERT_TRUE(queue_.Complete(ScoreResult(w, a, 1.0)).ok());
  waiter.join();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->size(), 2u);
  EXPECT_EQ((*result)[0].score().rewards(0), 1.0);
  EXPECT_EQ((*result)[1].score().rewards(0), 2.0);
}

TEST_F(WorkQueueTest, AwaitWorkersWaitsAndTimesOut) {
  absl::Status status;
  std::thread waiter(
      [&] { status = queue_.AwaitWorkers(v1::ROLE_ROLLOUT, 2, absl::Minutes(1)); });
  WaitForWaiters(clock_, 1);
  queue_.Register(v1::ROLE_ROLLOUT, "a", 1);
  queue_.Register(v1::ROLE_ROLLOUT, "b", 1);
  waiter.join();
  EXPECT_TRUE(status.ok()) << status;

  std::thread late(
      [&] { status = queue_.AwaitWorkers(v1::ROLE_SCORER, 1, absl::Minutes(1)); });
  WaitForWaiters(clock_, 1);
  clock_.Advance(absl::Minutes(2));
  late.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
}

TEST_F(WorkQueueTest, CloseWakesEveryWaiterWithCancelled) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(w, kNoWait)->has_value());

  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> awaited;
  absl::StatusOr<std::optional<v1::WorkItem>> pulled;
  absl::Status workers;
  std::thread t1([&] { awaited = queue_.Await({id}, absl::Hours(1)); });
  const std::string idle = queue_.Register(v1::ROLE_SCORER, "s", 1)->id;
  std::thread t2([&] { pulled = queue_.Pull(idle, absl::Hours(1)); });
  std::thread t3(
      [&] { workers = queue_.AwaitWorkers(v1::ROLE_ROLLOUT, 1, absl::Hours(1)); });
  WaitForWaiters(clock_, 3);
  EXPECT_FALSE(queue_.closed());
  queue_.Close();
  t1.join();
  t2.join();
  t3.join();
  EXPECT_TRUE(queue_.closed());
  EXPECT_EQ(awaited.status().code(), absl::StatusCode::kCancelled) << awaited.status();
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kCancelled) << pulled.status();
  EXPECT_EQ(workers.code(), absl::StatusCode::kCancelled) << workers;

  // And from now on, without waiting.
  EXPECT_EQ(queue_.Pull(w, absl::Hours(1)).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(queue_.Await({id}, absl::Hours(1)).status().code(),
            absl::StatusCode::kCancelled);
}

TEST_F(WorkQueueTest, AwaitShutdownNoticedWaitsForEveryWorkerToPull) {
  const std::string a = queue_.Register(v1::ROLE_ROLLOUT, "a", 1)->id;
  const std::string b = queue_.Register(v1::ROLE_SCORER, "b", 1)->id;
  queue_.Close();
  EXPECT_FALSE(queue_.AwaitShutdownNoticed(kNoWait));
  EXPECT_EQ(queue_.Pull(a, kNoWait).status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(queue_.AwaitShutdownNoticed(kNoWait)) << "b has not pulled yet";

  bool noticed = false;
  std::thread waiter([&] { noticed = queue_.AwaitShutdownNoticed(absl::Hours(1)); });
  WaitForWaiters(clock_, 1);
  EXPECT_EQ(queue_.Pull(b, kNoWait).status().code(), absl::StatusCode::kCancelled);
  waiter.join();
  EXPECT_TRUE(noticed);
}

TEST_F(WorkQueueTest, AwaitShutdownNoticedTimesOut) {
  queue_.Register(v1::ROLE_ROLLOUT, "a", 1);
  queue_.Close();
  bool noticed = true;
  std::thread waiter([&] { noticed = queue_.AwaitShutdownNoticed(absl::Seconds(3)); });
  WaitForWaiters(clock_, 1);
  clock_.Advance(absl::Seconds(3));
  waiter.join();
  EXPECT_FALSE(noticed);
}

// ---- Liveness: leases, lost workers, re-issued items, late results. ----

class WorkQueueLeaseTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  WorkQueue queue_{"run8", &clock_, WorkQueue::kDefaultMaxWorkers,
                   /*lease=*/absl::Seconds(10)};
};

TEST_F(WorkQueueLeaseTest,
       ASilentWorkersItemGoesToAnotherWorkerAndItsLateResultIsRefused) {
  const std::string dead = queue_.Register(v1::ROLE_SCORER, "dead", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0));
  ASSERT_EQ((*queue_.Pull(dead, kNoWait))->item_id(), id);
  const std::string alive = queue_.Register(v1::ROLE_SCORER, "alive", 1)->id;
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(queue_.Heartbeat(alive).ok());
  clock_.Advance(absl::Seconds(6));  // dead: 12 s silent; alive: 6 s
  EXPECT_EQ(queue_.ExpireSilentWorkers(), std::vector<std::string>{dead});
  EXPECT_EQ(queue_.CountWorkers(v1::ROLE_SCORER), 1);
  // The item is re-issued, whole and with its id, to the live worker.
  auto again = queue_.Pull(alive, kNoWait);
  ASSERT_TRUE(again.ok() && again->has_value()) << again.status();
  EXPECT_EQ((*again)->item_id(), id);
  // The lost worker's late result is refused and counted; its other calls say "register
  // again".
  EXPECT_EQ(queue_.Complete(ScoreResult(dead, id, 9.0)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(queue_.Heartbeat(dead).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(queue_.Pull(dead, kNoWait).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(queue_.Complete(ScoreResult(alive, id, 1.0)).ok());
  auto results = queue_.Await({id}, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].score().rewards(0), 1.0);  // applied once, from the live worker
  const WorkQueue::Counters c = queue_.counters();
  EXPECT_EQ(c.workers_lost, 1);
  EXPECT_EQ(c.items_reissued, 1);
  EXPECT_EQ(c.late_results_refused, 1);
}

TEST_F(WorkQueueLeaseTest, AnAwaitReissuesTheItemsOfAWorkerThatDiesWhileItWaits) {
  const std::string dead = queue_.Register(v1::ROLE_ROLLOUT, "dead", 1)->id;
  const std::string id = queue_.Submit(v1::ROLE_ROLLOUT, ScoreItem(0));
  ASSERT_TRUE(queue_.Pull(dead, kNoWait)->has_value());
  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> awaited;
  std::thread waiter([&] { awaited = queue_.Await({id}, absl::Hours(1)); });
  const std::string spare = queue_.Register(v1::ROLE_ROLLOUT, "spare", 1)->id;
  WaitForWaiters(clock_, 1);
  for (int i = 0; i < 12;
       ++i) {  // the Await wakes each second and expires the silent worker
    ASSERT_TRUE(queue_.Heartbeat(spare).ok());
    clock_.Advance(absl::Seconds(1));
    WaitForWaiters(clock_, 1);
  }
  auto pulled = queue_.Pull(spare, kNoWait);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  ASSERT_TRUE(pulled->has_value()) << "nothing re-issued";
  ASSERT_TRUE(queue_.Complete(ScoreResult(spare, id, 4.0)).ok());
  waiter.join();
  ASSERT_TRUE(awaited.ok()) << awaited.status();
  EXPECT_EQ((*awaited)[0].worker_id(), spare);
}

TEST_F(WorkQueueLeaseTest, SyncsAddressedToALostOrLeavingWorkerCompleteWithUnavailable) {
  const std::string a = queue_.Register(v1::ROLE_ROLLOUT, "a", 1)->id;
  const std::string b = queue_.Register(v1::ROLE_ROLLOUT, "b", 1)->id;
  v1::WorkItem sync;
  sync.mutable_sync()->set_version(2);
  const std::string to_a = queue_.Submit(v1::ROLE_ROLLOUT, sync, a);
  const std::string to_b = queue_.Submit(v1::ROLE_ROLLOUT, sync, b);
  ASSERT_TRUE(queue_.Pull(a, kNoWait)->has_value());  // a holds its sync, b never pulls
  const int64_t members = queue_.membership_version();
  ASSERT_TRUE(queue_.Deregister(a).ok());
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(queue_.ExpireSilentWorkers(), std::vector<std::string>{b});
  EXPECT_GT(queue_.membership_version(), members);
  auto results = queue_.Await({to_a, to_b}, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const auto& r : *results) {
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().code(), static_cast<int>(absl::StatusCode::kUnavailable));
  }
  EXPECT_EQ(queue_.counters().workers_left, 1);
  EXPECT_EQ(queue_.counters().workers_lost, 1);
}

TEST_F(WorkQueueLeaseTest, ARegistrationThatNeverCallsAgainExpiresAndFreesItsSeat) {
  WorkQueue small("run9", &clock_, /*max_workers=*/1, /*lease=*/absl::Seconds(10));
  ASSERT_TRUE(small.Register(v1::ROLE_ROLLOUT, "squatter", 1).ok());
  EXPECT_EQ(small.Register(v1::ROLE_ROLLOUT, "real", 1).status().code(),
            absl::StatusCode::kResourceExhausted);
  clock_.Advance(absl::Seconds(11));
  auto real = small.Register(v1::ROLE_ROLLOUT, "real", 1);
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_EQ(real->id, "real");
}

// Issue 17, finding 4 and 8: the run token alone no longer lets a caller act in another
// worker's name; every registration gets its own random session.
TEST_F(WorkQueueTest, OnlyTheRegisteredSessionAuthenticatesAWorker) {
  const WorkerRecord a = *queue_.Register(v1::ROLE_ROLLOUT, "a", 1);
  const WorkerRecord b = *queue_.Register(v1::ROLE_ROLLOUT, "b", 1);
  EXPECT_EQ(a.session.size(), 32u);
  EXPECT_NE(a.session, b.session);
  EXPECT_TRUE(queue_.Authenticate(a.id, a.session).ok());
  EXPECT_EQ(queue_.Authenticate(a.id, b.session).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(queue_.Authenticate(a.id, "").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(queue_.Authenticate("nobody", a.session).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(queue_.Deregister(a.id).ok());
  EXPECT_EQ(queue_.Authenticate(a.id, a.session).code(), absl::StatusCode::kNotFound);
}

// Issue 17, finding 4: an item held past its deadline comes back (as a DEADLINE_EXCEEDED
// error in its holder's name, charged to it) whatever the heartbeats say, and the
// holder's late result is refused.
TEST_F(WorkQueueTest, AnItemHeldPastItsDeadlineIsTakenBackAndItsLateResultRefused) {
  const std::string w = queue_.Register(v1::ROLE_SCORER, "slow", 1)->id;
  SubmitOptions options;
  options.deadline = absl::Seconds(10);
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0), options);
  ASSERT_EQ((*queue_.Pull(w, kNoWait))->item_id(), id);
  clock_.Advance(absl::Seconds(9));
  ASSERT_TRUE(queue_.Heartbeat(w).ok());
  EXPECT_TRUE(queue_.ExpireSilentWorkers().empty());
  EXPECT_EQ(queue_.counters().items_timed_out, 0);
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(queue_.Heartbeat(w).ok());  // heartbeats do not extend an item's deadline
  queue_.ExpireSilentWorkers();
  EXPECT_EQ(queue_.counters().items_timed_out, 1);
  EXPECT_EQ(queue_.counters().errors_charged, 1);
  auto results = queue_.Await({id}, kNoWait);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_TRUE((*results)[0].has_error());
  EXPECT_EQ((*results)[0].error().code(),
            static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ((*results)[0].worker_id(), w);
  EXPECT_EQ(queue_.Complete(ScoreResult(w, id, 1.0)).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(queue_.Authenticate(w, queue_.Workers()[0].session)
                  .ok());  // one miss: still a member
}

// Issue 17, findings 2 and 3: errors are charged to the worker that makes them; one that
// keeps failing is quarantined while another serves its role, and may not register
// under its name until the cool-down has passed.
TEST_F(WorkQueueTest, AWorkerThatKeepsFailingIsQuarantinedWhileAnotherServesItsRole) {
  queue_.SetFaultPolicy({/*quarantine_after=*/3, /*cooldown=*/absl::Seconds(60)});
  const std::string bad = queue_.Register(v1::ROLE_SCORER, "bad", 1)->id;
  const std::string good = queue_.Register(v1::ROLE_SCORER, "good", 1)->id;
  auto fail_one = [&](const std::string& worker) {
    const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0), worker);
    ASSERT_EQ((*queue_.Pull(worker, kNoWait))->item_id(), id);
    v1::CompleteWorkRequest r;
    r.set_worker_id(worker);
    r.set_item_id(id);
    r.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kInternal));
    r.mutable_error()->set_message("poisoned host");
    ASSERT_TRUE(queue_.Complete(r).ok());
  };
  fail_one(bad);
  fail_one(bad);
  // A success in between resets the count.
  const std::string ok_id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0), bad);
  ASSERT_TRUE(queue_.Pull(bad, kNoWait)->has_value());
  ASSERT_TRUE(queue_.Complete(ScoreResult(bad, ok_id, 1.0)).ok());
  fail_one(bad);
  fail_one(bad);
  EXPECT_EQ(queue_.counters().workers_quarantined, 0);
  fail_one(bad);
  EXPECT_EQ(queue_.counters().workers_quarantined, 1);
  EXPECT_EQ(queue_.counters().errors_charged, 5);
  EXPECT_EQ(queue_.CountWorkers(v1::ROLE_SCORER), 1);
  EXPECT_EQ(queue_.Pull(bad, kNoWait).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(queue_.Register(v1::ROLE_SCORER, "bad", 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  clock_.Advance(absl::Seconds(61));
  EXPECT_TRUE(queue_.Register(v1::ROLE_SCORER, "bad", 1).ok());
  // The only worker of its role is never quarantined: the items' own bounds decide.
  const std::string alone = queue_.Register(v1::ROLE_ROLLOUT, "alone", 1)->id;
  for (int i = 0; i < 5; ++i) {
    const std::string id = queue_.Submit(v1::ROLE_ROLLOUT, ScoreItem(0), alone);
    ASSERT_TRUE(queue_.Pull(alone, kNoWait)->has_value());
    v1::CompleteWorkRequest r;
    r.set_worker_id(alone);
    r.set_item_id(id);
    r.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
    ASSERT_TRUE(queue_.Complete(r).ok());
  }
  EXPECT_EQ(queue_.counters().workers_quarantined, 1);
  EXPECT_EQ(queue_.CountWorkers(v1::ROLE_ROLLOUT), 1);
  (void)good;
}

TEST_F(WorkQueueTest, AnAvoidedWorkerGetsTheItemOnlyWhenNoOtherWorkerOfTheRoleIsThere) {
  const std::string a = queue_.Register(v1::ROLE_SCORER, "a", 1)->id;
  const std::string b = queue_.Register(v1::ROLE_SCORER, "b", 1)->id;
  SubmitOptions options;
  options.avoid = {a};
  const std::string id = queue_.Submit(v1::ROLE_SCORER, ScoreItem(0), options);
  EXPECT_FALSE(queue_.Pull(a, kNoWait)->has_value());
  EXPECT_TRUE(queue_.AllWorkersIn(v1::ROLE_SCORER, {a, b}));
  EXPECT_FALSE(queue_.AllWorkersIn(v1::ROLE_SCORER, {a}));
  ASSERT_TRUE(queue_.Deregister(b).ok());
  auto pulled = queue_.Pull(a, kNoWait);
  ASSERT_TRUE(pulled.ok() && pulled->has_value());
  EXPECT_EQ((*pulled)->item_id(), id);
}

}  // namespace
}  // namespace duet
