#ifndef DUET_LEARNER_SERVICE_TESTING_FAKE_COLLECTIVE_H_
#define DUET_LEARNER_SERVICE_TESTING_FAKE_COLLECTIVE_H_

// Test-only fakes for the learner service's parts: a CollectiveFactory whose groups form,
// fail, time out or stall on command, and a worker that answers weight syncs from a
// WorkQueue as the test tells it. Header-only; never linked into a binary.
//
// Thread-safety: FakeCollectiveFactory is thread-safe; a FakeWorker runs its own thread
// and its setters may be called from any thread.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/base/clock.h"
#include "common/weights/collective.h"
#include "learner/service/work_queue.h"

namespace duet::testing {

// What one rendezvous (FakeCollectiveFactory::Create) and the group's broadcasts do.
struct FakeCollectiveScript {
  enum class Rendezvous {
    kForm,     // the group forms
    kFail,     // Unavailable at once (a peer dropped out)
    kTimeOut,  // the ranks not in `absent_ranks` join (their keys are written into the
               // rendezvous store), the clock moves by the timeout: DeadlineExceeded
    kStall,    // blocks until the caller's `abandon` says so (Unavailable, "abandoned")
               // or FakeCollectiveFactory::Release() (then the group forms)
  };
  enum class Broadcast {
    kOk,       // every broadcast succeeds
    kFail,     // Unavailable (a member died)
    kTimeOut,  // DeadlineExceeded (a member stalled)
  };
  Rendezvous rendezvous = Rendezvous::kForm;
  Broadcast broadcast = Broadcast::kOk;
  std::set<int> absent_ranks;  // kTimeOut: the ranks that never join
};

class FakeCollective final : public Collective {
 public:
  FakeCollective(int rank, int world_size, FakeCollectiveScript::Broadcast mode,
                 std::shared_ptr<std::atomic<int>> broadcasts)
      : rank_(rank), world_size_(world_size), mode_(mode), broadcasts_(broadcasts) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "fake"; }
  absl::Status Broadcast(torch::Tensor& tensor, int root) override {
    ++*broadcasts_;
    switch (mode_) {
      case FakeCollectiveScript::Broadcast::kOk:
        return absl::OkStatus();
      case FakeCollectiveScript::Broadcast::kFail:
        return absl::UnavailableError("fake broadcast: a member died");
      case FakeCollectiveScript::Broadcast::kTimeOut:
        return absl::DeadlineExceededError("fake broadcast: a member stalled");
    }
    return absl::InternalError("unreachable");
  }

 private:
  const int rank_;
  const int world_size_;
  const FakeCollectiveScript::Broadcast mode_;
  const std::shared_ptr<std::atomic<int>> broadcasts_;
};

class FakeCollectiveFactory final : public CollectiveFactory {
 public:
  // `clock` (not owned; may be null): kTimeOut advances it by the options' timeout when
  // it is a FakeClock.
  explicit FakeCollectiveFactory(FakeClock* clock = nullptr) : clock_(clock) {}

  // Every Create from now on follows `script(options)`.
  void SetScript(std::function<FakeCollectiveScript(const CollectiveOptions&)> script) {
    absl::MutexLock lock(&mu_);
    script_ = std::move(script);
  }
  void SetScript(FakeCollectiveScript script) {
    SetScript([script](const CollectiveOptions&) { return script; });
  }

  absl::StatusOr<std::unique_ptr<Collective>> Create(
      const CollectiveOptions& options) override {
    FakeCollectiveScript script;
    {
      absl::MutexLock lock(&mu_);
      ++creates_;
      last_options_ = options;
      script = script_(options);
    }
    using R = FakeCollectiveScript::Rendezvous;
    switch (script.rendezvous) {
      case R::kForm:
        break;
      case R::kFail:
        return absl::UnavailableError("fake rendezvous: a peer dropped out");
      case R::kTimeOut:
        for (int rank = 0; rank < options.world_size; ++rank) {
          if (script.absent_ranks.count(rank) > 0 || options.rendezvous == nullptr)
            continue;
          const absl::Status s = options.rendezvous->Set(
              absl::StrCat(options.group_prefix, "/0/", rank), "1");
          if (!s.ok()) return s;
        }
        if (clock_ != nullptr) clock_->Advance(options.timeout);
        return absl::DeadlineExceededError("fake rendezvous: ranks missing");
      case R::kStall: {
        absl::MutexLock lock(&mu_);
        ++stalled_;
        // Polls `abandon` as the real rendezvous does while it waits for keys.
        while (!released_) {
          if (options.abandon && options.abandon()) {
            --stalled_;
            return absl::UnavailableError("fake rendezvous abandoned");
          }
          mu_.AwaitWithTimeout(absl::Condition(&released_), absl::Milliseconds(1));
        }
        --stalled_;
        break;
      }
    }
    return std::make_unique<FakeCollective>(options.rank, options.world_size,
                                            script.broadcast, broadcasts_);
  }

  // Ends every kStall rendezvous (the groups form) and the ones to come.
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  int creates() const {
    absl::MutexLock lock(&mu_);
    return creates_;
  }
  // How many Creates are blocked in a kStall rendezvous now.
  int stalled() const {
    absl::MutexLock lock(&mu_);
    return stalled_;
  }
  int broadcasts() const { return broadcasts_->load(); }
  CollectiveOptions last_options() const {
    absl::MutexLock lock(&mu_);
    return last_options_;
  }

 private:
  FakeClock* const clock_;
  mutable absl::Mutex mu_;  // guards the script and the counters
  std::function<FakeCollectiveScript(const CollectiveOptions&)> script_ ABSL_GUARDED_BY(
      mu_) = [](const CollectiveOptions&) { return FakeCollectiveScript{}; };
  int creates_ ABSL_GUARDED_BY(mu_) = 0;
  int stalled_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  CollectiveOptions last_options_ ABSL_GUARDED_BY(mu_);
  const std::shared_ptr<std::atomic<int>> broadcasts_ =
      std::make_shared<std::atomic<int>>(0);
};

// A registered worker that pulls from the queue in its own thread and answers each
// weight sync as told: over c10d (the item names an epoch) or over gRPC
// (fetch_over_grpc). It stops when the queue closes or evicts it, or when destroyed.
class FakeWorker {
 public:
  enum class Answer {
    kConfirm,  // the item's version and checksum
    kError,    // an error result (its c10d call failed)
    kWrongChecksum,
    kSilent,  // takes the item and never answers
  };

  // REQUIRES: `id` is registered in `queue`.
  FakeWorker(WorkQueue* queue, std::string id) : queue_(queue), id_(std::move(id)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeWorker() {
    done_.Notify();
    thread_.join();
  }

  const std::string& id() const { return id_; }
  void set_c10d_answer(Answer a) {
    absl::MutexLock lock(&mu_);
    c10d_ = a;
  }
  // The answer to a sync in broadcast epoch `epoch` (others: set_c10d_answer's).
  void set_c10d_answer_in_epoch(int64_t epoch, Answer a) {
    absl::MutexLock lock(&mu_);
    c10d_in_epoch_[epoch] = a;
  }
  void set_grpc_answer(Answer a) {
    absl::MutexLock lock(&mu_);
    grpc_ = a;
  }
  // The sync items taken so far, in order.
  std::vector<v1::WeightSync> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  // How many sync items it has answered (its result handed to the queue).
  int answered() const {
    absl::MutexLock lock(&mu_);
    return answered_;
  }
  // Whether its first Pull has begun (the queue counts it as a worker that pulled).
  bool pulling() const {
    absl::MutexLock lock(&mu_);
    return pulls_ > 0;
  }

 private:
  void Loop() {
    while (!done_.HasBeenNotified()) {
      {
        absl::MutexLock lock(&mu_);
        ++pulls_;
      }
      absl::StatusOr<std::optional<v1::WorkItem>> item =
          queue_->Pull(id_, absl::Hours(24 * 365));
      if (!item.ok()) return;  // closed, or evicted
      if (!item->has_value() || !(*item)->has_sync()) continue;
      const v1::WeightSync& sync = (*item)->sync();
      Answer answer;
      {
        absl::MutexLock lock(&mu_);
        received_.push_back(sync);
        auto in_epoch = c10d_in_epoch_.find(sync.epoch());
        answer = sync.fetch_over_grpc()             ? grpc_
                 : in_epoch != c10d_in_epoch_.end() ? in_epoch->second
                                                    : c10d_;
      }
      if (answer == Answer::kSilent) {
        done_.WaitForNotification();
        return;
      }
      v1::CompleteWorkRequest result;
      result.set_worker_id(id_);
      result.set_item_id((*item)->item_id());
      if (answer == Answer::kError) {
        result.mutable_error()->set_code(
            static_cast<int>(absl::StatusCode::kUnavailable));
        result.mutable_error()->set_message("fake worker: c10d failed");
      } else {
        result.mutable_sync()->set_version(sync.version());
        result.mutable_sync()->set_checksum(sync.checksum() +
                                            (answer == Answer::kWrongChecksum ? 1 : 0));
      }
      (void)queue_->Complete(result);
      absl::MutexLock lock(&mu_);
      ++answered_;
    }
  }

  WorkQueue* const queue_;
  const std::string id_;
  absl::Notification done_;  // set by the destructor: the thread returns
  mutable absl::Mutex mu_;   // guards the answers and the record
  Answer c10d_ ABSL_GUARDED_BY(mu_) = Answer::kConfirm;
  Answer grpc_ ABSL_GUARDED_BY(mu_) = Answer::kConfirm;
  std::map<int64_t, Answer> c10d_in_epoch_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WeightSync> received_ ABSL_GUARDED_BY(mu_);
  int pulls_ ABSL_GUARDED_BY(mu_) = 0;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // pulls and answers until done_, a close or an eviction
};

}  // namespace duet::testing

#endif  // DUET_LEARNER_SERVICE_TESTING_FAKE_COLLECTIVE_H_
