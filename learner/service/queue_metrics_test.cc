#include "learner/service/queue_metrics.h"

#include <gtest/gtest.h>

#include "learner/service/work_queue.h"

namespace duet {
namespace {

TEST(DesiredWorkersTest, FollowsTheFormula) {
  // No open work: keep the pool (or ask for the recipe's while it has not come).
  EXPECT_EQ(
      QueueMetrics::DesiredWorkers(0, 0, 0, /*live=*/3, /*max_open=*/8, /*recipe=*/2), 3);
  EXPECT_EQ(QueueMetrics::DesiredWorkers(0, 0, 0, /*live=*/0, 8, /*recipe=*/2), 2);
  // 2 workers, items waited 3 s per open second on average (Q = 3): 5 workers.
  EXPECT_EQ(QueueMetrics::DesiredWorkers(10, 30, 0, 2, 16, 2), 5);
  // 4 workers, 1.5 idle on average, nothing waiting: round(2.5) = 3 (half up).
  EXPECT_EQ(QueueMetrics::DesiredWorkers(10, 0, 15, 4, 16, 2), 3);
  // Bounded by the items open at once, and by 1 from below.
  EXPECT_EQ(QueueMetrics::DesiredWorkers(10, 300, 0, 2, 4, 2), 4);
  EXPECT_EQ(QueueMetrics::DesiredWorkers(10, 0, 100, 2, 4, 2), 1);
}

// The events as WorkQueue reports them (work_queue.cc), on a fake clock.
class QueueMetricsTest : public ::testing::Test {
 protected:
  QueueMetricsTest() : metrics_(registry_), qm_(&metrics_, &clock_) {}
  void Lease(const std::string& worker, const std::string& item) {
    qm_.OnPullBegin(worker);
    qm_.OnPullEnd(worker, absl::ZeroDuration(), item);
  }
  v1::CompleteWorkRequest Result(const std::string& worker, const std::string& item) {
    v1::CompleteWorkRequest r;
    r.set_worker_id(worker);
    r.set_item_id(item);
    r.mutable_rollout();
    return r;
  }
  prometheus::Registry registry_;
  metrics::CoordinatorMetrics metrics_;
  FakeClock clock_;
  QueueMetrics qm_;
};

TEST_F(QueueMetricsTest, CountsItemsWaitsAndLiveWorkers) {
  qm_.OnRegister("r0", v1::ROLE_ROLLOUT);
  EXPECT_EQ(metrics_.registrations.rollout->Value(), 1);
  EXPECT_EQ(metrics_.live_workers.rollout->Value(), 1);
  qm_.OnSubmit("i1", v1::ROLE_ROLLOUT, /*sync=*/false);
  qm_.OnSubmit("s1", v1::ROLE_ROLLOUT,
               /*sync=*/true);  // weight syncs are not counted here
  EXPECT_EQ(metrics_.items_enqueued.rollout->Value(), 1);
  EXPECT_EQ(metrics_.items_queued.rollout->Value(), 1);
  clock_.Advance(absl::Seconds(3));  // the item waits 3 s for a worker
  Lease("r0", "s1");
  v1::CompleteWorkRequest sync = Result("r0", "s1");
  sync.mutable_sync()->set_version(1);
  qm_.OnComplete(sync, absl::OkStatus());
  EXPECT_EQ(metrics_.items_completed.rollout->Value(), 0);
  Lease("r0", "i1");
  EXPECT_EQ(metrics_.items_queued.rollout->Value(), 0);
  EXPECT_EQ(metrics_.items_leased.rollout->Value(), 1);
  EXPECT_DOUBLE_EQ(metrics_.item_wait_seconds.rollout->Collect().histogram.sample_sum,
                   3.0);
  clock_.Advance(absl::Seconds(2));
  qm_.OnComplete(Result("r0", "i1"), absl::OkStatus());
  EXPECT_EQ(metrics_.items_completed.rollout->Value(), 1);
  EXPECT_EQ(metrics_.items_leased.rollout->Value(), 0);
  EXPECT_DOUBLE_EQ(metrics_.item_service_seconds.rollout->Collect().histogram.sample_sum,
                   2.0);
  // The item was open 5 s; nobody was polling meanwhile.
  EXPECT_DOUBLE_EQ(metrics_.work_open_seconds.rollout->Value(), 5.0);
  EXPECT_DOUBLE_EQ(metrics_.worker_idle_seconds.rollout->Value(), 0.0);
  // A second result for the same item (WorkQueue refuses it NotFound) is a duplicate.
  qm_.OnComplete(Result("r0", "i1"), absl::NotFoundError("not in flight"));
  EXPECT_EQ(metrics_.duplicate_completions.rollout->Value(), 1);
  EXPECT_EQ(metrics_.items_completed.rollout->Value(), 1);
  // Live is the registry: silence alone changes nothing until the queue drops the worker.
  clock_.Advance(absl::Seconds(600));
  qm_.Refresh();
  EXPECT_EQ(metrics_.live_workers.rollout->Value(), 1);
  qm_.OnWorkerGone("r0", /*lost=*/false);
  EXPECT_EQ(metrics_.live_workers.rollout->Value(), 0);
  EXPECT_EQ(metrics_.left_workers.rollout->Value(), 1);
  EXPECT_EQ(metrics_.lost_workers.rollout->Value(), 0);
}

// The real WorkQueue reporting here: the lease registry's counters and the metrics agree.
TEST_F(QueueMetricsTest, LostWorkersItemsAndLateResultsMatchTheQueuesCounters) {
  WorkQueue queue("run", &clock_, /*max_workers=*/8, /*lease=*/absl::Seconds(3));
  queue.SetMetrics(&qm_);
  auto r0 = queue.Register(v1::ROLE_ROLLOUT, "r0", 1);
  auto r1 = queue.Register(v1::ROLE_ROLLOUT, "r1", 1);
  auto s0 = queue.Register(v1::ROLE_SCORER, "s0", 1);
  ASSERT_TRUE(r0.ok() && r1.ok() && s0.ok());
  EXPECT_EQ(metrics_.live_workers.rollout->Value(), 2);
  EXPECT_EQ(metrics_.live_workers.scorer->Value(), 1);
  const std::string id = queue.Submit(v1::ROLE_ROLLOUT, v1::WorkItem());
  auto item = queue.Pull(r0->id, absl::ZeroDuration());
  ASSERT_TRUE(item.ok() && item->has_value());
  EXPECT_EQ(metrics_.items_leased.rollout->Value(), 1);
  // r0 goes silent with the item; r1 and s0 keep calling in.
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(queue.Heartbeat(r1->id).ok());
  ASSERT_TRUE(queue.Heartbeat(s0->id).ok());
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(queue.ExpireSilentWorkers(), std::vector<std::string>{r0->id});
  ASSERT_TRUE(queue.Deregister(s0->id).ok());
  EXPECT_EQ(metrics_.live_workers.rollout->Value(), 1);
  EXPECT_EQ(metrics_.live_workers.scorer->Value(), 0);
  EXPECT_EQ(metrics_.items_leased.rollout->Value(), 0);
  EXPECT_EQ(metrics_.items_queued.rollout->Value(), 1);
  // r0's late result is refused; r1 gets the item again and completes it.
  EXPECT_TRUE(absl::IsNotFound(queue.Complete(Result(r0->id, id))));
  auto again = queue.Pull(r1->id, absl::ZeroDuration());
  ASSERT_TRUE(again.ok() && again->has_value());
  ASSERT_TRUE(queue.Complete(Result(r1->id, id)).ok());
  const WorkQueue::Counters c = queue.counters();
  EXPECT_EQ(c.workers_lost, 1);
  EXPECT_EQ(c.workers_left, 1);
  EXPECT_EQ(c.items_reissued, 1);
  EXPECT_EQ(c.late_results_refused, 1);
  EXPECT_EQ(
      metrics_.lost_workers.rollout->Value() + metrics_.lost_workers.scorer->Value(),
      c.workers_lost);
  EXPECT_EQ(metrics_.left_workers.scorer->Value(), c.workers_left);
  EXPECT_EQ(metrics_.items_reissued.rollout->Value(), c.items_reissued);
  EXPECT_EQ(metrics_.lease_expirations.rollout->Value(), 1);
  EXPECT_EQ(metrics_.late_results_refused.rollout->Value(), c.late_results_refused);
  EXPECT_EQ(metrics_.items_completed.rollout->Value(), 1);
  EXPECT_EQ(metrics_.items_queued.rollout->Value(), 0);
  EXPECT_EQ(metrics_.items_leased.rollout->Value(), 0);
  // The re-issued item waited from its re-queue (t=4 s) to its second lease (t=4 s).
  EXPECT_EQ(metrics_.item_wait_seconds.rollout->Collect().histogram.sample_count, 2u);
}

TEST_F(QueueMetricsTest, IdleWorkerSecondsCountOnlyWhileWorkIsOpen) {
  qm_.OnRegister("r0", v1::ROLE_ROLLOUT);
  qm_.OnRegister("r1", v1::ROLE_ROLLOUT);
  qm_.OnPullBegin("r1");
  clock_.Advance(absl::Seconds(4));  // nothing open: not idle time
  qm_.Refresh();
  EXPECT_DOUBLE_EQ(metrics_.worker_idle_seconds.rollout->Value(), 0.0);
  qm_.OnSubmit("i1", v1::ROLE_ROLLOUT, false);
  Lease("r0", "i1");  // r0 works on it, r1 keeps polling
  clock_.Advance(absl::Seconds(2));
  qm_.Refresh();
  EXPECT_DOUBLE_EQ(metrics_.worker_idle_seconds.rollout->Value(), 2.0);
  EXPECT_DOUBLE_EQ(metrics_.work_open_seconds.rollout->Value(), 2.0);
  EXPECT_EQ(metrics_.live_workers.rollout->Value(),
            2);  // r1 is polling, r0 called 2 s ago
}

TEST_F(QueueMetricsTest, TransientErrorsAreReissuesOthersFailures) {
  qm_.OnRegister("s0", v1::ROLE_SCORER);
  for (int code : {14, 3}) {
    const std::string id = "i" + std::to_string(code);
    qm_.OnSubmit(id, v1::ROLE_SCORER, false);
    Lease("s0", id);
    v1::CompleteWorkRequest r = Result("s0", id);
    r.mutable_error()->set_code(code);
    qm_.OnComplete(r, absl::OkStatus());
  }
  EXPECT_EQ(metrics_.items_reissued.scorer->Value(), 1);
  EXPECT_EQ(metrics_.ItemsFailed(/*is_rollout=*/false, 3).Value(), 1);
  EXPECT_EQ(metrics_.items_completed.scorer->Value(), 0);
  EXPECT_EQ(metrics_.items_leased.scorer->Value(), 0);
}

TEST_F(QueueMetricsTest, PoolGaugesFromTheWindow) {
  qm_.OnRegister("r0", v1::ROLE_ROLLOUT);
  qm_.UpdatePools(/*recipe_rollout=*/2, /*recipe_scorer=*/1);
  // Nothing open yet: the recipe's sizes (no evidence).
  EXPECT_EQ(metrics_.pool_desired_workers.rollout->Value(), 2);
  EXPECT_EQ(metrics_.pool_desired_workers.scorer->Value(), 1);
  // Four items, one worker: each waits for the ones before it.
  for (int i = 0; i < 4; ++i)
    qm_.OnSubmit("i" + std::to_string(i), v1::ROLE_ROLLOUT, false);
  for (int i = 0; i < 4; ++i) {
    Lease("r0", "i" + std::to_string(i));
    clock_.Advance(absl::Seconds(1));
    qm_.OnComplete(Result("r0", "i" + std::to_string(i)), absl::OkStatus());
  }
  qm_.UpdatePools(2, 1);
  // Open 4 s; waits 0+1+2+3 = 6 s: Q = 1.5, I = 0, N = 1: round(2.5) = 3, within C = 4.
  EXPECT_DOUBLE_EQ(metrics_.pool_items_waiting.rollout->Value(), 1.5);
  EXPECT_DOUBLE_EQ(metrics_.pool_idle_workers.rollout->Value(), 0.0);
  EXPECT_DOUBLE_EQ(metrics_.pool_open_ratio.rollout->Value(), 1.0);
  EXPECT_EQ(metrics_.pool_desired_workers.rollout->Value(), 3);
}

}  // namespace
}  // namespace duet
