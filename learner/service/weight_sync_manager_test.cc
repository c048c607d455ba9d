#include "learner/service/weight_sync_manager.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/weights/weight_sync.h"
#include "learner/service/testing/fake_collective.h"

namespace duet {
namespace {

using testing::FakeCollectiveFactory;
using testing::FakeCollectiveScript;
using testing::FakeWorker;
using Answer = FakeWorker::Answer;

// Bound on real time for a step that must happen (a thread blocking, a call returning);
// a test that hits it fails instead of hanging. Nothing waits for it to pass.
constexpr absl::Duration kPatience = absl::Seconds(20);

// Waits (in real time, bounded by kPatience) until `condition` holds.
template <typename F>
bool Eventually(F condition) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A script under which `rank` never joins the rendezvous of a group of `world_size`
// ranks (the rendezvous times out); other groups form.
std::function<FakeCollectiveScript(const CollectiveOptions&)> NeverJoins(int world_size,
                                                                         int rank) {
  return [world_size, rank](const CollectiveOptions& c) {
    FakeCollectiveScript s;
    if (c.world_size == world_size) {
      s.rendezvous = FakeCollectiveScript::Rendezvous::kTimeOut;
      s.absent_ranks = {rank};
    }
    return s;
  };
}

class WeightSyncManagerTest : public ::testing::Test {
 protected:
  WeightSyncManagerTest()
      : queue_("run-test", &clock_),
        telemetry_(/*registry=*/nullptr, &clock_),
        rendezvous_(std::make_shared<RendezvousStore>()),
        factory_(&clock_),
        params_({torch::arange(0, 8, torch::kFloat32), torch::ones({3, 2})}) {
    options_.collective_timeout = absl::Seconds(60);
    options_.grace = absl::Seconds(120);
    options_.auth_token = "token";
  }

  void TearDown() override {
    queue_.Close();  // the fake workers' pulls end
    workers_.clear();
  }

  std::unique_ptr<WeightSyncManager> MakeManager() {
    return std::make_unique<WeightSyncManager>(options_, &queue_, &snapshot_, rendezvous_,
                                               &factory_, &telemetry_, &clock_);
  }

  // Registers workers "a", "b", ... (ranks follow this order) and waits until each has
  // pulled, so that the syncs include it.
  void AddWorkers(int n) {
    for (int i = 0; i < n; ++i) {
      const std::string name(1, static_cast<char>('a' + i));
      absl::StatusOr<WorkerRecord> w = queue_.Register(
          i % 2 == 0 ? v1::ROLE_ROLLOUT : v1::ROLE_SCORER, name, /*capacity=*/1);
      ASSERT_TRUE(w.ok()) << w.status();
      ASSERT_EQ(w->id, name);
      workers_.push_back(std::make_unique<FakeWorker>(&queue_, w->id));
    }
    ASSERT_TRUE(Eventually([&] {
      int pulled = 0;
      for (const WorkerRecord& w : queue_.Workers()) pulled += w.pulled ? 1 : 0;
      return pulled == n;
    }));
  }

  FakeWorker& worker(int i) { return *workers_[i]; }

  // Two workers whose c10d calls fail, and groups whose broadcasts fail.
  void BreakEveryBroadcastForTwoWorkers() {
    AddWorkers(2);
    for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kError);
    FakeCollectiveScript broken;
    broken.broadcast = FakeCollectiveScript::Broadcast::kFail;
    factory_.SetScript(broken);
  }

  // Three workers: "a" and "b" fail their c10d call in epoch 1 (and confirm later
  // epochs), "c" takes its item and never answers. Starts sync.Sync(1) on another thread.
  std::future<absl::Status> SyncWithASilentMember(WeightSyncManager& sync) {
    AddWorkers(3);
    worker(0).set_c10d_answer_in_epoch(1, Answer::kError);
    worker(1).set_c10d_answer_in_epoch(1, Answer::kError);
    worker(2).set_c10d_answer(Answer::kSilent);
    return std::async(std::launch::async,
                      [this, &sync] { return sync.Sync(/*version=*/1, params_); });
  }

  // Moves the clock by `step` until `done` is ready (bounded by kPatience in real time):
  // the waiter may not have begun its wait when the clock first moves.
  bool AdvanceUntilReady(std::future<absl::Status>& done, absl::Duration step) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (done.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
      if (absl::Now() > deadline) return false;
      clock_.Advance(step);
    }
    return true;
  }

  WorkerRecord Record(const std::string& id) {
    for (const WorkerRecord& w : queue_.Workers()) {
      if (w.id == id) return w;
    }
    return WorkerRecord{};
  }

  uint64_t Checksum() const { return WeightChecksum(params_); }

  FakeClock clock_;
  WorkQueue queue_;
  LearnerTelemetry telemetry_;
  WeightSnapshot snapshot_;
  std::shared_ptr<RendezvousStore> rendezvous_;
  FakeCollectiveFactory factory_;
  WeightSyncOptions options_;
  std::vector<torch::Tensor> params_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

TEST_F(WeightSyncManagerTest, FormsAnEpochOnceAndBroadcastsEveryVersion) {
  AddWorkers(2);
  auto sync = MakeManager();
  ASSERT_TRUE(sync->Sync(/*version=*/1, params_).ok());
  ASSERT_TRUE(sync->Sync(/*version=*/2, params_).ok());
  EXPECT_EQ(factory_.creates(), 1);  // the same members: the group is reused
  EXPECT_EQ(sync->epoch(), 1);
  EXPECT_TRUE(sync->group_formed());
  EXPECT_EQ(factory_.last_options().world_size, 3);
  EXPECT_EQ(factory_.last_options().timeout, absl::Seconds(60));
  EXPECT_GT(factory_.broadcasts(), 0);
  for (int i = 0; i < 2; ++i) {
    const std::vector<v1::WeightSync> got = worker(i).received();
    ASSERT_EQ(got.size(), 2u);
    for (const v1::WeightSync& s : got) {
      EXPECT_FALSE(s.fetch_over_grpc());
      EXPECT_EQ(s.rank(), i + 1);
      EXPECT_EQ(s.world_size(), 3);
      EXPECT_EQ(s.epoch(), 1);
    }
    EXPECT_EQ(Record(worker(i).id()).confirmed_version, 2);
    EXPECT_EQ(Record(worker(i).id()).confirmed_checksum, Checksum());
  }
  EXPECT_EQ(snapshot_.version(), 2);
  EXPECT_EQ(snapshot_.checksum(), Checksum());
}

// An epoch whose broadcast fails re-forms at once with the members that said their c10d
// call failed; when the re-formed epoch fails too, every worker that did not confirm gets
// the version over the gRPC stream within the same sync, and the next sync forms a new
// epoch.
TEST_F(WeightSyncManagerTest, AnEpochThatFailsAgainWhenReformedFallsBackToTheStream) {
  BreakEveryBroadcastForTwoWorkers();
  auto sync = MakeManager();
  ASSERT_TRUE(sync->Sync(/*version=*/1, params_).ok());
  EXPECT_FALSE(sync->group_formed());
  EXPECT_EQ(factory_.creates(), 2);  // the epoch and its re-formed successor
  for (int i = 0; i < 2; ++i) {
    const std::vector<v1::WeightSync> got = worker(i).received();
    ASSERT_EQ(got.size(), 3u) << worker(i).id();
    EXPECT_FALSE(got[0].fetch_over_grpc());
    EXPECT_EQ(got[0].epoch(), 1);
    EXPECT_FALSE(got[1].fetch_over_grpc());
    EXPECT_EQ(got[1].epoch(), 2);
    EXPECT_TRUE(got[2].fetch_over_grpc());
    EXPECT_EQ(got[2].version(), 1);
    EXPECT_EQ(got[2].checksum(), Checksum());
    const WorkerRecord r = Record(worker(i).id());
    EXPECT_EQ(r.id, worker(i).id()) << "evicted";
    EXPECT_EQ(r.confirmed_version, 1);
    EXPECT_EQ(sync->absent_until(worker(i).id()), 0) << "both answered: no one to blame";
  }
  // The next sync forms epoch 3 (a fresh group), which works.
  factory_.SetScript(FakeCollectiveScript{});
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kConfirm);
  ASSERT_TRUE(sync->Sync(/*version=*/2, params_).ok());
  EXPECT_EQ(factory_.creates(), 3);
  EXPECT_EQ(sync->epoch(), 3);
  EXPECT_TRUE(sync->group_formed());
  for (int i = 0; i < 2; ++i) {
    const std::vector<v1::WeightSync> got = worker(i).received();
    ASSERT_EQ(got.size(), 4u);
    EXPECT_FALSE(got[3].fetch_over_grpc());
    EXPECT_EQ(got[3].epoch(), 3);
    EXPECT_EQ(Record(worker(i).id()).confirmed_version, 2);
  }
}

// A member dies mid-broadcast: the others say their c10d call failed, and once the
// reform window has passed the group re-forms without the silent one and broadcasts the
// version again, without waiting for the dead member's lease or the collective timeout
// (the fake clock has moved by the window only when they confirm and the sync ends). The
// silent member is blamed (left out of the next epochs); the sync does not wait for it,
// and does not evict it (alive, it would catch up over gRPC; dead, its lease ends it).
TEST_F(WeightSyncManagerTest, AFailedEpochReformsAtOnceWithoutTheMemberThatDied) {
  auto creates = std::make_shared<std::atomic<int>>(0);
  factory_.SetScript([creates](const CollectiveOptions&) {
    FakeCollectiveScript s;
    if ((*creates)++ == 0) s.broadcast = FakeCollectiveScript::Broadcast::kFail;
    return s;
  });
  auto sync = MakeManager();
  const absl::Time before = clock_.Now();
  std::future<absl::Status> done = SyncWithASilentMember(*sync);
  // a and b answered and pull again, c holds its item, and the sync waits out the window
  // (three waiters on the clock: the two pulls and the sync).
  ASSERT_TRUE(Eventually([&] {
    return worker(0).answered() == 1 && worker(1).answered() == 1 &&
           worker(2).received().size() == 1 && clock_.waiters() == 3;
  }));
  clock_.Advance(options_.reform_window);
  // (A fake member confirms as soon as it takes its item, which may be before the group
  // is created: wait for both.)
  ASSERT_TRUE(Eventually([&] {
    return Record("a").confirmed_version == 1 && Record("b").confirmed_version == 1 &&
           factory_.creates() == 2;
  }));
  EXPECT_EQ(clock_.Now() - before, options_.reform_window);
  EXPECT_EQ(sync->epoch(), 2);
  EXPECT_EQ(factory_.last_options().world_size, 3);  // the learner, a and b
  // The sync ends without waiting for the silent member.
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_TRUE(done.get().ok());
  EXPECT_EQ(clock_.Now() - before, options_.reform_window);
  for (int i = 0; i < 2; ++i) {
    const std::vector<v1::WeightSync> got = worker(i).received();
    ASSERT_EQ(got.size(), 2u) << worker(i).id();
    EXPECT_EQ(got[0].epoch(), 1);
    EXPECT_EQ(got[1].epoch(), 2);
    EXPECT_FALSE(got[1].fetch_over_grpc());
    EXPECT_EQ(got[1].world_size(), 3);
  }
  EXPECT_EQ(worker(2).received().size(), 1u);
  EXPECT_EQ(sync->epoch_ranks(), (std::map<std::string, int32_t>{{"a", 1}, {"b", 2}}));
  EXPECT_GT(sync->absent_until("c"), sync->syncs()) << "c should have been blamed";
  EXPECT_EQ(Record("c").id, "c") << "c is not evicted by the sync";
  EXPECT_EQ(queue_.items_held(), 0) << "c's item should have been dropped";
  // The next sync sends c nothing (it has not called in since it was blamed: a dead
  // worker would otherwise hold this sync until its lease ran out) and reuses the group.
  ASSERT_TRUE(sync->Sync(/*version=*/2, params_).ok());
  EXPECT_EQ(worker(2).received().size(), 1u);
  EXPECT_EQ(Record("a").confirmed_version, 2);
  EXPECT_EQ(Record("b").confirmed_version, 2);
  EXPECT_EQ(factory_.creates(), 2);
  EXPECT_EQ(clock_.Now() - before, options_.reform_window);
}

// A member that never joined the rendezvous is named absent by the timed-out rendezvous
// itself: the re-form does not wait out the window for its answer.
TEST_F(WeightSyncManagerTest, AReformDoesNotWaitForAMemberTheRendezvousNamedAbsent) {
  factory_.SetScript(NeverJoins(/*world_size=*/4, /*rank=*/3));  // "c", while a member
  auto sync = MakeManager();
  const absl::Time before = clock_.Now();
  std::future<absl::Status> done = SyncWithASilentMember(*sync);
  ASSERT_TRUE(Eventually([&] {
    return Record("a").confirmed_version == 1 && Record("b").confirmed_version == 1 &&
           factory_.creates() == 2;
  }));
  // Only the rendezvous's own timeout has passed, not the reform window.
  EXPECT_EQ(clock_.Now() - before, options_.collective_timeout);
  EXPECT_EQ(sync->epoch_ranks(), (std::map<std::string, int32_t>{{"a", 1}, {"b", 2}}));
  EXPECT_GT(sync->absent_until("c"), sync->syncs());
  // The sync still waits for c's answer, until the sync's deadline.
  ASSERT_TRUE(AdvanceUntilReady(done, options_.collective_timeout + options_.grace));
  EXPECT_TRUE(done.get().ok());
}

// reform_window zero: no re-form; the workers of a failed epoch go to the gRPC stream.
TEST_F(WeightSyncManagerTest, WithoutAReformWindowAFailedEpochGoesToTheStream) {
  options_.reform_window = absl::ZeroDuration();
  BreakEveryBroadcastForTwoWorkers();
  auto sync = MakeManager();
  ASSERT_TRUE(sync->Sync(/*version=*/1, params_).ok());
  EXPECT_EQ(factory_.creates(), 1);
  for (int i = 0; i < 2; ++i) {
    const std::vector<v1::WeightSync> got = worker(i).received();
    ASSERT_EQ(got.size(), 2u) << worker(i).id();
    EXPECT_FALSE(got[0].fetch_over_grpc());
    EXPECT_TRUE(got[1].fetch_over_grpc());
    EXPECT_EQ(Record(worker(i).id()).confirmed_version, 1);
  }
}

TEST(FallbackDeadlineTest, GrowsWithTheBytesAndTheWorkers) {
  EXPECT_EQ(FallbackDeadline(absl::Seconds(120), 0, 10, 125e6), absl::Seconds(120));
  EXPECT_EQ(FallbackDeadline(absl::Seconds(120), 250'000'000, 1, 125e6),
            absl::Seconds(122));
  EXPECT_EQ(FallbackDeadline(absl::Seconds(120), 250'000'000, 10, 125e6),
            absl::Seconds(140));
  EXPECT_EQ(FallbackDeadline(absl::Seconds(120), 250'000'000, 10, 0), absl::Seconds(120));
}

// A worker that cannot take the weights even over gRPC (it confirms another checksum) is
// evicted; the others finish the sync.
TEST_F(WeightSyncManagerTest, AWorkerThatFailsOverTheStreamTooIsEvicted) {
  AddWorkers(2);
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kError);
  worker(1).set_grpc_answer(Answer::kWrongChecksum);
  FakeCollectiveScript broken;
  broken.broadcast = FakeCollectiveScript::Broadcast::kTimeOut;
  factory_.SetScript(broken);
  auto sync = MakeManager();
  ASSERT_TRUE(sync->Sync(/*version=*/1, params_).ok());
  EXPECT_EQ(Record("a").confirmed_version, 1);
  EXPECT_TRUE(Record("b").id.empty()) << "b should have been evicted";
}

// A member that stalls in the rendezvous (its rank's key never appears) is left out of
// the epochs of the next 2, 4, 8, ... syncs and gets them over gRPC meanwhile: failed
// epochs at syncs 1, 4 and 9 only. The other member is in every epoch.
TEST_F(WeightSyncManagerTest, AMemberThatStallsIsLeftOutWithADoublingBackOff) {
  AddWorkers(2);
  worker(1).set_c10d_answer(Answer::kError);                     // its c10d calls fail
  factory_.SetScript(NeverJoins(/*world_size=*/3, /*rank=*/2));  // "b", while a member
  auto sync = MakeManager();
  std::vector<int64_t> b_member;  // the syncs whose epoch had "b"
  std::vector<int64_t> b_until;
  for (int64_t v = 1; v <= 10; ++v) {
    ASSERT_TRUE(sync->Sync(v, params_).ok()) << v;
    if (sync->epoch_ranks().count("b") > 0) b_member.push_back(v);
    b_until.push_back(sync->absent_until("b"));
    EXPECT_EQ(Record("a").confirmed_version, v);
    EXPECT_EQ(Record("b").confirmed_version, v) << "b syncs over gRPC meanwhile";
  }
  EXPECT_EQ(b_member, (std::vector<int64_t>{1, 4, 9}));
  EXPECT_EQ(b_until, (std::vector<int64_t>{4, 4, 4, 9, 9, 9, 9, 9, 18, 18}));
  EXPECT_EQ(sync->syncs(), 10);
}

// A rendezvous that fails for another reason than its timeout (a member dropped out)
// blames no one: the next sync asks every member again.
TEST_F(WeightSyncManagerTest, ARendezvousThatFailsWithoutTimingOutBlamesNoOne) {
  AddWorkers(2);
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kError);
  FakeCollectiveScript failing;
  failing.rendezvous = FakeCollectiveScript::Rendezvous::kFail;
  factory_.SetScript(failing);
  auto sync = MakeManager();
  ASSERT_TRUE(sync->Sync(/*version=*/1, params_).ok());
  EXPECT_EQ(sync->absent_until("a"), 0);
  EXPECT_EQ(sync->absent_until("b"), 0);
  factory_.SetScript(FakeCollectiveScript{});
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kConfirm);
  ASSERT_TRUE(sync->Sync(/*version=*/2, params_).ok());
  EXPECT_EQ(sync->epoch_ranks().size(), 2u);
  EXPECT_EQ(Record("b").confirmed_version, 2);
}

// The run shuts down (the queue closes) while a sync waits for the workers: the sync
// returns Cancelled at once, without the clock moving, and the published snapshot is
// the whole version.
TEST_F(WeightSyncManagerTest, AShutdownWhileASyncWaitsEndsItAtOnce) {
  AddWorkers(2);
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kSilent);
  auto sync = MakeManager();
  const absl::Time before = clock_.Now();
  std::future<absl::Status> done =
      std::async(std::launch::async, [&] { return sync->Sync(/*version=*/3, params_); });
  ASSERT_TRUE(Eventually([&] {
    return worker(0).received().size() == 1 && worker(1).received().size() == 1;
  }));
  queue_.Close();
  if (done.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    clock_.Advance(absl::Hours(1));  // let it end before the test fails
    FAIL() << "the sync did not end at the shutdown";
  }
  const absl::Status s = done.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(clock_.Now(), before);  // no timeout ran out
  EXPECT_EQ(snapshot_.version(), 3);
  EXPECT_EQ(snapshot_.checksum(), Checksum());
}

// The run shuts down while an epoch is still forming (a member stalls in the
// rendezvous): the rendezvous is abandoned and the sync returns Cancelled, without
// waiting out the collective timeout.
TEST_F(WeightSyncManagerTest, AShutdownWhileAnEpochFormsEndsIt) {
  AddWorkers(2);
  for (int i = 0; i < 2; ++i) worker(i).set_c10d_answer(Answer::kSilent);
  FakeCollectiveScript stalled;
  stalled.rendezvous = FakeCollectiveScript::Rendezvous::kStall;
  factory_.SetScript(stalled);
  auto sync = MakeManager();
  const absl::Time before = clock_.Now();
  std::future<absl::Status> done =
      std::async(std::launch::async, [&] { return sync->Sync(/*version=*/1, params_); });
  ASSERT_TRUE(Eventually([&] { return factory_.stalled() == 1; }));
  queue_.Close();
  if (done.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    factory_.Release();  // let it end before the test fails
    FAIL() << "the sync did not end at the shutdown";
  }
  const absl::Status s = done.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(clock_.Now(), before);
  EXPECT_FALSE(sync->group_formed());
  EXPECT_EQ(snapshot_.version(), 1);
  EXPECT_EQ(snapshot_.checksum(), Checksum());
}

// Without a rendezvous store (collective: none) every sync goes over gRPC.
TEST_F(WeightSyncManagerTest, WithoutAStoreEverySyncGoesOverTheStream) {
  AddWorkers(1);
  WeightSyncManager sync(options_, &queue_, &snapshot_, /*rendezvous=*/nullptr, &factory_,
                         &telemetry_, &clock_);
  ASSERT_TRUE(sync.Sync(/*version=*/1, params_).ok());
  EXPECT_EQ(factory_.creates(), 0);
  ASSERT_EQ(worker(0).received().size(), 1u);
  EXPECT_TRUE(worker(0).received()[0].fetch_over_grpc());
  EXPECT_EQ(Record("a").confirmed_version, 1);
}

}  // namespace
}  // namespace duet
