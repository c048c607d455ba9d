#ifndef DUET_COMMON_WEIGHTS_RENDEZVOUS_STORE_H_
#define DUET_COMMON_WEIGHTS_RENDEZVOUS_STORE_H_

// The key-value store that the ranks of a broadcast epoch meet through (c10d's
// rendezvous: each rank writes its Gloo address under the group's prefix and reads the
// others'), held by the learner itself instead of a c10d TCPStore, so that nothing
// listens on a port of its own: the learner's rank reaches it in process, the workers
// only over the learner's authenticated gRPC service (Coordinator.Rendezvous, with the
// run token and their session; common/weights/grpc_rendezvous.h). An outsider on the
// network can then neither stall a rendezvous nor make the learner hold memory (issue
// 17).
//
// Keys live under open prefixes (one per broadcast epoch, opened by the learner): a key
// under no open prefix is refused (PermissionDenied), and closing a prefix drops its
// keys. Everything a caller can make it hold is bounded (ResourceExhausted past the
// bounds).
//
// Thread-safety: thread-safe.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace duet {

// What the ranks of a group meet through when it is not a TCPStore
// (CollectiveOptions::rendezvous): the part of c10d::Store that Gloo's rendezvous uses.
// Get is NotFound while a key is absent (the c10d adapter polls until its timeout).
class RendezvousClient {
 public:
  virtual ~RendezvousClient() = default;
  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  virtual absl::StatusOr<std::string> Get(const std::string& key) = 0;
  // Adds `delta` to the key's number (absent: 0) and returns the sum. InvalidArgument
  // when the value is not a number.
  virtual absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta) = 0;
  // Whether the key existed.
  virtual absl::StatusOr<bool> Delete(const std::string& key) = 0;
  // Whether every key exists.
  virtual absl::StatusOr<bool> Check(const std::vector<std::string>& keys) = 0;
  virtual absl::StatusOr<int64_t> NumKeys() = 0;
};

class RendezvousStore final : public RendezvousClient {
 public:
  static constexpr size_t kMaxKeyBytes = 512;
  static constexpr size_t kMaxValueBytes = 64 << 10;
  static constexpr size_t kMaxKeys = 1 << 16;
  static constexpr size_t kMaxTotalBytes = 64 << 20;

  // Keys under `prefix` (of the form "<prefix>/...") may be written from now on.
  void OpenPrefix(const std::string& prefix);
  // Drops the keys under `prefix` and refuses new ones there.
  void ClosePrefix(const std::string& prefix);
  // The keys under `prefix`, sorted (what a failed rendezvous left: who joined).
  std::vector<std::string> KeysUnder(const std::string& prefix) const;

  // RendezvousClient. InvalidArgument for an empty or oversized key or value;
  // PermissionDenied for a key under no open prefix (Set, Add); ResourceExhausted past
  // kMaxKeys or kMaxTotalBytes.
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta) override;
  absl::StatusOr<bool> Delete(const std::string& key) override;
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys) override;
  absl::StatusOr<int64_t> NumKeys() override;

 private:
  absl::Status WritableLocked(const std::string& key, size_t value_bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;  // guards everything below
  std::set<std::string> open_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // keys and values held
};

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_RENDEZVOUS_STORE_H_
