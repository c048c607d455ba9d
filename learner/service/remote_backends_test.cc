#include "learner/service/remote_backends.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/base/clock.h"
#include "common/model/test_models.h"
#include "common/rpc/proto_convert.h"

namespace duet {
namespace {

using Handler = std::function<v1::CompleteWorkRequest(const v1::WorkItem&)>;

const TokenLayout kLayout = testing::TinyTestLayout();

// The image a fake rollout worker returns for sample j of the request's input at global
// index `input`: recognisable, so the test can check the gathered order.
std::vector<int64_t> FakeImage(int64_t input, int64_t j) {
  const int64_t codes = kLayout.image_end - kLayout.image_begin;
  return {kLayout.image_begin + input % codes, kLayout.image_begin + j % codes,
          kLayout.image_begin, kLayout.image_begin + 1};
}

double FakeReward(const RewardQuery& q) { return q.input[0] * 100.0 + q.output[0]; }

// A rollout worker that answers every item with K recognisable images per input, at the
// version the item asks for (or at `report_version` when set).
Handler RolloutHandler(int64_t report_version = -1) {
  return [report_version](const v1::WorkItem& item) {
    v1::CompleteWorkRequest r;
    auto req = FromProto(item.rollout(), kLayout);
    if (!req.ok()) {
      r.mutable_error()->set_code(static_cast<int>(req.status().code()));
      r.mutable_error()->set_message(std::string(req.status().message()));
      return r;
    }
    std::vector<Group> groups(req->inputs.size());
    for (size_t i = 0; i < groups.size(); ++i) {
      for (int64_t j = 0; j < req->k; ++j) {
        Sample s;
        s.output = FakeImage(req->input_offset + static_cast<int64_t>(i), j);
        s.policy_logprobs.assign(s.output.size(), -0.5f);
        groups[i].samples.push_back(std::move(s));
      }
    }
    ToProto(groups, r.mutable_rollout());
    r.set_policy_version(report_version >= 0 ? report_version : item.policy_version());
    return r;
  };
}

// A scorer worker: one reward per query (FakeReward), `delta` more or fewer.
Handler ScoreHandler(int delta = 0) {
  return [delta](const v1::WorkItem& item) {
    v1::CompleteWorkRequest r;
    auto queries = FromProto(item.score(), kLayout);
    if (!queries.ok()) {
      r.mutable_error()->set_code(static_cast<int>(queries.status().code()));
      r.mutable_error()->set_message(std::string(queries.status().message()));
      return r;
    }
    std::vector<double> rewards;
    for (const auto& q : *queries) rewards.push_back(FakeReward(q));
    if (delta < 0) rewards.resize(rewards.size() + delta);
    for (int i = 0; i < delta; ++i) rewards.push_back(1.0);
    for (double x : rewards) r.mutable_score()->add_rewards(x);
    r.set_policy_version(item.policy_version());
    return r;
  };
}

// Answers any item with a body of the wrong kind (a weight-sync confirmation).
Handler SyncHandler() {
  return [](const v1::WorkItem& item) {
    v1::CompleteWorkRequest r;
    r.mutable_sync()->set_version(item.policy_version());
    r.set_policy_version(item.policy_version());
    return r;
  };
}

Handler ErrorHandler(absl::StatusCode code, const std::string& message) {
  return [code, message](const v1::WorkItem&) {
    v1::CompleteWorkRequest r;
    r.mutable_error()->set_code(static_cast<int>(code));
    r.mutable_error()->set_message(message);
    return r;
  };
}

class RemoteBackendsTest : public ::testing::Test {
 protected:
  struct Seen {
    std::string worker_id;
    v1::WorkItem item;
  };

  // Registers `n` workers of `role`, each a thread that pulls items and completes them
  // with `handler`'s result until the queue closes.
  void StartWorkers(v1::Role role, int n, Handler handler) {
    for (int i = 0; i < n; ++i) {
      const std::string id = queue_.Register(role, "fake", /*capacity=*/8)->id;
      threads_.emplace_back([this, id, handler] {
        for (;;) {
          auto item = queue_.Pull(id, absl::Hours(1));  // the fake clock never gets there
          if (!item.ok()) return;                       // closed
          if (!item->has_value()) continue;
          {
            absl::MutexLock lock(&mu_);
            seen_.push_back({id, **item});
          }
          v1::CompleteWorkRequest r = handler(**item);
          r.set_worker_id(id);
          r.set_item_id((*item)->item_id());
          EXPECT_TRUE(queue_.Complete(r).ok());
        }
      });
    }
  }

  void TearDown() override {
    queue_.Close();
    for (auto& t : threads_) t.join();
  }

  std::vector<Seen> SeenSortedByOffset() {
    absl::MutexLock lock(&mu_);
    std::vector<Seen> out = seen_;
    std::sort(out.begin(), out.end(), [](const Seen& a, const Seen& b) {
      return a.item.rollout().input_offset() < b.item.rollout().input_offset();
    });
    return out;
  }

  std::vector<Seen> SeenItems() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

  DispatchOptions Options(int64_t min_rows_per_item) {
    DispatchOptions o;
    o.min_rows_per_item = min_rows_per_item;
    o.pool_wait = absl::ZeroDuration();  // re-issue at once (PoolWait tests set it)
    return o;
  }

  static RolloutRequest CaptionRequest(int n, int64_t k) {
    RolloutRequest r;
    r.task = Task::kGeneration;
    for (int i = 0; i < n; ++i)
      r.inputs.push_back({kLayout.text_begin + i % 20, kLayout.text_begin + 1});
    r.k = k;
    r.cfg_scale = 1.5;
    r.seed = 99;
    r.policy_version = 7;  // the learner's; items carry the served version instead
    return r;
  }

  static std::vector<RewardQuery> Queries(int n) {
    std::vector<RewardQuery> q;
    for (int i = 0; i < n; ++i) {
      q.push_back({Task::kGeneration, {kLayout.text_begin + i % 20}, FakeImage(i, 0)});
    }
    return q;
  }

  FakeClock clock_;
  WorkQueue queue_{"run", &clock_};
  std::atomic<int64_t> served_version_{5};
  std::function<int64_t()> served_ = [this] { return served_version_.load(); };
  std::vector<std::thread> threads_;
  absl::Mutex mu_;  // guards seen_, written by the worker threads
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
};

TEST_F(RemoteBackendsTest, RolloutIsSplitAcrossWorkersAndGatheredInOrder) {
  StartWorkers(v1::ROLE_ROLLOUT, 2, RolloutHandler());
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/4));
  const RolloutRequest request = CaptionRequest(8, /*k=*/2);
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(request);
  ASSERT_TRUE(groups.ok()) << groups.status();

  ASSERT_EQ(groups->size(), 8u);
  for (size_t i = 0; i < groups->size(); ++i) {
    const Group& g = (*groups)[i];
    EXPECT_EQ(g.task, Task::kGeneration);
    EXPECT_EQ(g.input, request.inputs[i]) << i;
    ASSERT_EQ(g.samples.size(), 2u);
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_EQ(g.samples[j].output, FakeImage(static_cast<int64_t>(i), j))
          << i << "," << j;
      EXPECT_EQ(g.samples[j].policy_logprobs.size(), g.samples[j].output.size());
      EXPECT_EQ(g.samples[j].policy_version, 5);  // what the worker reported
    }
  }

  // Two items (one per worker), four inputs each, offsets into the whole request.
  std::vector<Seen> seen = SeenSortedByOffset();
  ASSERT_EQ(seen.size(), 2u);
  for (size_t p = 0; p < 2; ++p) {
    const v1::WorkItem& item = seen[p].item;
    EXPECT_EQ(item.policy_version(), 5);
    ASSERT_TRUE(item.has_rollout());
    EXPECT_EQ(item.rollout().input_offset(), static_cast<int64_t>(4 * p));
    EXPECT_EQ(item.rollout().inputs_size(), 4);
    EXPECT_EQ(item.rollout().k(), 2);
    EXPECT_EQ(item.rollout().seed(), 99u);
    EXPECT_TRUE(item.rollout().use_cfg());
    EXPECT_EQ(item.rollout().cfg_scale(), 1.5);
    // Each group names the item that sampled it (the learner's ledger records it).
    for (int64_t i = 4 * static_cast<int64_t>(p); i < 4 * static_cast<int64_t>(p) + 4;
         ++i) {
      EXPECT_EQ((*groups)[i].item_id, item.item_id()) << i;
    }
  }
}

TEST_F(RemoteBackendsTest, PartsKeepTheRequestsOwnOffset) {
  StartWorkers(v1::ROLE_ROLLOUT, 2, RolloutHandler());
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  RolloutRequest request = CaptionRequest(4, /*k=*/1);
  request.input_offset = 10;
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(request);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ((*groups)[i].samples[0].output, FakeImage(10 + i, 0));
  std::vector<Seen> seen = SeenSortedByOffset();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].item.rollout().input_offset(), 10);
  EXPECT_EQ(seen[1].item.rollout().input_offset(), 12);
}

TEST_F(RemoteBackendsTest, MinRowsPerItemLimitsTheSplit) {
  StartWorkers(v1::ROLE_ROLLOUT, 4, RolloutHandler());
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/8));
  // 4 inputs x k 4 = 16 rows, at least 8 rows (2 inputs) per item: 2 items, not 4.
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(CaptionRequest(4, /*k=*/4));
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ(groups->size(), 4u);
  std::vector<Seen> seen = SeenItems();
  ASSERT_EQ(seen.size(), 2u);
  for (const Seen& s : seen)
    EXPECT_EQ(s.item.rollout().inputs_size() * s.item.rollout().k(), 8);
}

TEST_F(RemoteBackendsTest, ItemsCarryTheServedVersionAndSamplesTheReportedOne) {
  StartWorkers(v1::ROLE_ROLLOUT, 1, RolloutHandler(/*report_version=*/3));
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  served_version_ = 4;
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(CaptionRequest(2, /*k=*/2));
  ASSERT_TRUE(groups.ok()) << groups.status();
  // The worker said it sampled with version 3: the samples say so, so the learner can
  // refuse them.
  for (const Group& g : *groups) {
    for (const Sample& s : g.samples) EXPECT_EQ(s.policy_version, 3);
  }
  served_version_ = 6;
  ASSERT_TRUE(rollout.Sample(CaptionRequest(2, /*k=*/2)).ok());
  std::vector<Seen> seen = SeenItems();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].item.policy_version(), 4);
  EXPECT_EQ(seen[1].item.policy_version(), 6);
}

// Asynchronous mode: a collection requested at version 3 whose items are made after the
// learner published a newer version asks for 3, not for weights a worker may not hold
// yet; concurrent calls (collections of several steps) each get their own results.
TEST_F(RemoteBackendsTest, ItemsNeverAskForANewerVersionThanTheRequest) {
  StartWorkers(v1::ROLE_ROLLOUT, 2, RolloutHandler());
  StartWorkers(v1::ROLE_SCORER, 1, ScoreHandler());
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  served_version_ = 6;
  std::vector<absl::StatusOr<std::vector<Group>>> groups(3,
                                                         absl::UnknownError("not run"));
  std::vector<std::thread> calls;
  for (int v = 3; v <= 5; ++v) {
    calls.emplace_back([&, v] {
      RolloutRequest r = CaptionRequest(4, /*k=*/2);
      r.policy_version = v;
      r.seed = 100 + v;
      groups[v - 3] = rollout.Sample(r);
    });
  }
  for (auto& t : calls) t.join();
  for (int v = 3; v <= 5; ++v) {
    ASSERT_TRUE(groups[v - 3].ok()) << groups[v - 3].status();
    for (const Group& g : *groups[v - 3]) {
      for (const Sample& s : g.samples)
        EXPECT_EQ(s.policy_version, v);  // what the worker said
    }
  }
  ASSERT_TRUE(scorer.Score(Queries(4), /*policy_version=*/2).ok());
  std::map<uint64_t, int64_t> version_by_seed;
  for (const Seen& s : SeenItems()) {
    if (s.item.has_score()) {
      EXPECT_EQ(s.item.policy_version(), 2);
    } else {
      version_by_seed[s.item.rollout().seed()] = s.item.policy_version();
    }
  }
  EXPECT_EQ(version_by_seed, (std::map<uint64_t, int64_t>{{103, 3}, {104, 4}, {105, 5}}));
}

TEST_F(RemoteBackendsTest, RolloutWorkerErrorComesBackWithItsCode) {
  StartWorkers(v1::ROLE_ROLLOUT, 1,
               ErrorHandler(absl::StatusCode::kResourceExhausted, "out of memory"));
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(CaptionRequest(2, /*k=*/2));
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kResourceExhausted)
      << groups.status();
  EXPECT_NE(groups.status().message().find("out of memory"), absl::string_view::npos)
      << groups.status();
}

TEST_F(RemoteBackendsTest, TransientErrorsReissueTheItemAtMostMaxRetriesTimes) {
  StartWorkers(v1::ROLE_ROLLOUT, 1,
               ErrorHandler(absl::StatusCode::kUnavailable, "going away"));
  DispatchOptions options = Options(/*min_rows_per_item=*/1);
  options.max_retries = 2;
  RemoteRollout rollout(&queue_, served_, options);
  absl::StatusOr<std::vector<Group>> groups = rollout.Sample(CaptionRequest(1, /*k=*/2));
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kUnavailable) << groups.status();
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(seen_.size(), 3u);  // the first try and two re-issues
}

TEST_F(RemoteBackendsTest, ATransientErrorThenASuccessGivesTheResult) {
  std::atomic<int> calls{0};
  Handler flaky = [&calls, ok = ScoreHandler()](const v1::WorkItem& item) {
    if (calls.fetch_add(1) == 0)
      return ErrorHandler(absl::StatusCode::kResourceExhausted, "oom")(item);
    return ok(item);
  };
  StartWorkers(v1::ROLE_SCORER, 1, flaky);
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/100));
  const std::vector<RewardQuery> queries = Queries(3);
  absl::StatusOr<std::vector<double>> rewards = scorer.Score(queries, 0);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  ASSERT_EQ(rewards->size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ((*rewards)[i], FakeReward(queries[i]));
  EXPECT_EQ(calls.load(), 2);
}

// Issue 17, finding 3: a permanent code is no longer the end of the run on its own: it
// follows the same bound as a transient one (here: the only worker, so max_retries).
TEST_F(RemoteBackendsTest, PermanentErrorsOfTheOnlyWorkerFailTheStepAfterTheRetries) {
  StartWorkers(v1::ROLE_SCORER, 1,
               ErrorHandler(absl::StatusCode::kInvalidArgument, "bad pair"));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/100));
  EXPECT_EQ(scorer.Score(Queries(2), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(seen_.size(), 4u);  // the first try and max_retries (3) more
}

// A broken (or hostile) worker that is, for a moment, its role's whole pool (it
// registered before the healthy one, still starting): the item it failed waits for
// another worker instead of being judged poisoned by a pool of one, and the healthy
// worker serves it.
TEST_F(RemoteBackendsTest, AnItemFailedByTheWholePoolWaitsForAnotherWorker) {
  StartWorkers(v1::ROLE_SCORER, 1, ErrorHandler(absl::StatusCode::kInternal, "broken"));
  DispatchOptions options = Options(/*min_rows_per_item=*/100);
  options.pool_wait = absl::Seconds(60);
  RemoteScorer scorer(&queue_, served_, options);
  absl::StatusOr<std::vector<double>> scored;
  std::thread step([&] { scored = scorer.Score(Queries(2), 0); });
  // The item failed once, and the dispatcher waits for another scorer (no clock moves:
  // a pool of one alone would have failed the step after 3 more tries).
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (!seen_.empty()) break;
    }
    std::this_thread::yield();
  }
  // Until the dispatcher waits with nothing queued (the broken worker waits in Pull
  // beside it), or, without the wait, the broken worker has pulled the re-issued item.
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (seen_.size() > 1) break;
    }
    if (clock_.waiters() >= 2 && queue_.items_held() == 0) break;
    std::this_thread::yield();
  }
  {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(seen_.size(), 1u) << "the item was re-issued to the only, broken worker";
  }
  StartWorkers(v1::ROLE_SCORER, 1, ScoreHandler());
  step.join();
  ASSERT_TRUE(scored.ok()) << scored.status();
  EXPECT_EQ(scored->size(), 2u);
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_NE(seen_[0].worker_id, seen_[1].worker_id)
      << "the healthy worker serves the re-issue";
}

// Issue 17, findings 2 and 3: a worker that answers every item with an error (transient
// or not) is quarantined, its items go to the healthy worker, and every step succeeds.
TEST_F(RemoteBackendsTest, OneWorkerFailingEveryItemDoesNotEndTheRun) {
  for (const absl::StatusCode code :
       {absl::StatusCode::kUnavailable, absl::StatusCode::kInternal}) {
    SCOPED_TRACE(absl::StatusCodeToString(code));
    FakeClock clock;
    WorkQueue queue("run", &clock);
    std::vector<std::thread> threads;
    std::atomic<int> bad_items{0};
    auto start = [&](const std::string& name, Handler handler) {
      const std::string id = queue.Register(v1::ROLE_ROLLOUT, name, 8)->id;
      threads.emplace_back([&queue, id, handler] {
        for (;;) {
          auto item = queue.Pull(id, absl::Hours(1));
          if (!item.ok()) return;  // closed, or quarantined
          if (!item->has_value()) continue;
          v1::CompleteWorkRequest r = handler(**item);
          r.set_worker_id(id);
          r.set_item_id((*item)->item_id());
          EXPECT_TRUE(queue.Complete(r).ok());
        }
      });
    };
    Handler error = ErrorHandler(code, "broken worker");
    start("bad", [&bad_items, error](const v1::WorkItem& item) {
      ++bad_items;
      return error(item);
    });
    start("good", RolloutHandler());
    RemoteRollout rollout(&queue, served_, Options(/*min_rows_per_item=*/1));
    // Which worker pulls which item is up to the threads: step until the broken one has
    // had its three items (a bound keeps a scheduler that starves it from hanging here).
    for (int step = 0; step < 200 && queue.counters().workers_quarantined == 0; ++step) {
      RolloutRequest request = CaptionRequest(4, /*k=*/2);
      request.input_offset = step * 4;
      absl::StatusOr<std::vector<Group>> groups = rollout.Sample(request);
      ASSERT_TRUE(groups.ok()) << groups.status();
      ASSERT_EQ(groups->size(), 4u);
      for (size_t i = 0; i < 4; ++i)
        EXPECT_EQ(groups->at(i).samples[1].output, FakeImage(step * 4 + i, 1));
    }
    EXPECT_EQ(queue.counters().workers_quarantined, 1);
    EXPECT_LE(bad_items.load(), 3);  // quarantined at its third error
    queue.Close();
    for (auto& t : threads) t.join();
  }
}

// An item that fails on poison_workers distinct workers fails the step, naming each.
TEST_F(RemoteBackendsTest, AnItemThatFailsOnThreeWorkersIsPoisonedAndNamesThem) {
  StartWorkers(v1::ROLE_SCORER, 3,
               ErrorHandler(absl::StatusCode::kInternal, "cannot score this pair"));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/100));
  const absl::Status s = scorer.Score(Queries(2), 0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  for (const char* id : {"fake", "fake-2", "fake-3"})
    EXPECT_NE(s.message().find(id), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("3 worker(s)"), absl::string_view::npos) << s;
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(seen_.size(), 3u);  // one try each: no worker got it twice
}

TEST_F(RemoteBackendsTest, MalformedRolloutResultsAreErrors) {
  // One group too few.
  StartWorkers(v1::ROLE_ROLLOUT, 1, [](const v1::WorkItem& item) {
    v1::CompleteWorkRequest r = RolloutHandler()(item);
    r.mutable_rollout()->mutable_groups()->RemoveLast();
    return r;
  });
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  EXPECT_FALSE(rollout.Sample(CaptionRequest(3, /*k=*/2)).ok());
}

TEST_F(RemoteBackendsTest, RolloutResultWithoutARolloutIsAnError) {
  StartWorkers(v1::ROLE_ROLLOUT, 1, SyncHandler());
  RemoteRollout rollout(&queue_, served_, Options(/*min_rows_per_item=*/1));
  EXPECT_FALSE(rollout.Sample(CaptionRequest(2, /*k=*/2)).ok());
}

TEST_F(RemoteBackendsTest, ScoresAreSplitAndGatheredInOrder) {
  StartWorkers(v1::ROLE_SCORER, 3, ScoreHandler());
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/4));
  const std::vector<RewardQuery> queries = Queries(20);
  absl::StatusOr<std::vector<double>> rewards =
      scorer.Score(queries, /*policy_version=*/7);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  ASSERT_EQ(rewards->size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ((*rewards)[i], FakeReward(queries[i])) << i;

  std::vector<Seen> seen = SeenItems();
  ASSERT_EQ(seen.size(), 3u);  // one per worker
  int total = 0;
  for (const Seen& s : seen) {
    EXPECT_EQ(s.item.policy_version(), 5);
    ASSERT_TRUE(s.item.has_score());
    EXPECT_GE(s.item.score().queries_size(), 4);
    total += s.item.score().queries_size();
  }
  EXPECT_EQ(total, 20);
}

TEST_F(RemoteBackendsTest, FewQueriesGoToOneItem) {
  StartWorkers(v1::ROLE_SCORER, 3, ScoreHandler());
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/8));
  const std::vector<RewardQuery> queries = Queries(5);
  absl::StatusOr<std::vector<double>> rewards = scorer.Score(queries, 0);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  ASSERT_EQ(rewards->size(), 5u);
  EXPECT_EQ(SeenItems().size(), 1u);
}

TEST_F(RemoteBackendsTest, MissingRewardsAreAnError) {
  StartWorkers(v1::ROLE_SCORER, 1, ScoreHandler(/*delta=*/-1));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  EXPECT_FALSE(scorer.Score(Queries(4), 0).ok());
}

TEST_F(RemoteBackendsTest, ExtraRewardsAreAnError) {
  StartWorkers(v1::ROLE_SCORER, 1, ScoreHandler(/*delta=*/1));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  EXPECT_FALSE(scorer.Score(Queries(4), 0).ok());
}

TEST_F(RemoteBackendsTest, ScoreResultWithoutRewardsIsAnError) {
  StartWorkers(v1::ROLE_SCORER, 1, SyncHandler());
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  EXPECT_FALSE(scorer.Score(Queries(2), 0).ok());
}

TEST_F(RemoteBackendsTest, ScorerWorkerErrorComesBackWithItsCode) {
  StartWorkers(v1::ROLE_SCORER, 2,
               ErrorHandler(absl::StatusCode::kFailedPrecondition,
                            "holds version 3, item wants 5"));
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  absl::StatusOr<std::vector<double>> rewards = scorer.Score(Queries(4), 5);
  ASSERT_FALSE(rewards.ok());
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kFailedPrecondition)
      << rewards.status();
  EXPECT_NE(rewards.status().message().find("holds version 3"), absl::string_view::npos);
}

TEST_F(RemoteBackendsTest, EmptyRequestsNeedNoItems) {
  StartWorkers(v1::ROLE_SCORER, 1, ScoreHandler());
  RemoteScorer scorer(&queue_, served_, Options(/*min_rows_per_item=*/1));
  absl::StatusOr<std::vector<double>> rewards = scorer.Score({}, 0);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  EXPECT_TRUE(rewards->empty());
  EXPECT_TRUE(SeenItems().empty());
}

TEST_F(RemoteBackendsTest, NoWorkersTimesOutWithDeadlineExceeded) {
  DispatchOptions o = Options(/*min_rows_per_item=*/1);
  o.worker_wait = absl::Seconds(30);
  RemoteScorer scorer(&queue_, served_, o);
  absl::StatusOr<std::vector<double>> rewards;
  std::thread caller([&] { rewards = scorer.Score(Queries(2), 0); });
  while (clock_.waiters() < 1) std::this_thread::yield();
  clock_.Advance(absl::Seconds(31));
  caller.join();
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kDeadlineExceeded)
      << rewards.status();
}

}  // namespace
}  // namespace duet
