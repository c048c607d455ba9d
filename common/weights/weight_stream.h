#ifndef DUET_COMMON_WEIGHTS_WEIGHT_STREAM_H_
#define DUET_COMMON_WEIGHTS_WEIGHT_STREAM_H_

// The gRPC weight stream, both ends: the learner publishes the flattened parameters of a
// version (in the wire dtype: float32, or bfloat16 rounded as the broadcast rounds them)
// in a WeightSnapshot and streams it in chunks (FetchWeights); a worker reassembles the
// chunks with WeightStreamAssembler and verifies the checksum.
// Used by workers that join late, by workers without a collective seat, and as the only
// path with collective `none`. The c10d path is weight_sync.h.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/weights/weight_sync.h"
#include "duet/v1/coordinator.pb.h"

namespace duet {

// The weights FetchWeights streams: the flattened parameters of one version.
// Thread-safety: thread-safe. A stream holds the version it started with (shared, not
// copied) while a newer one is published.
class WeightSnapshot {
 public:
  void Set(int64_t version, SerializedWeights weights);
  // The current snapshot (null bytes: nothing published); it never changes.
  struct Published {
    int64_t version = 0;
    std::shared_ptr<const SerializedWeights> weights;
  };
  Published Get() const;
  int64_t version() const;
  uint64_t checksum() const;

 private:
  mutable absl::Mutex mu_;  // guards the snapshot
  Published current_ ABSL_GUARDED_BY(mu_);
};

// Default, smallest and largest chunk of a stream. The smallest bounds how long one
// client can keep a server thread streaming (a 1-byte chunk made a 281 s stream).
inline constexpr int64_t kDefaultWeightChunkBytes = 4 << 20;
inline constexpr int64_t kMinWeightChunkBytes = 64 << 10;
inline constexpr int64_t kMaxWeightChunkBytes = 32 << 20;

// Sends the current snapshot as chunks of `chunk_bytes` (0: the default) to `write`, in
// order. InvalidArgument for a chunk size other than 0 or [kMinWeightChunkBytes,
// kMaxWeightChunkBytes]; Unavailable
// when nothing is published; Cancelled when `cancelled()` turns true or `write` returns
// false. Thread-safety: reads a copy of the snapshot.
absl::Status StreamWeightSnapshot(
    const WeightSnapshot& snapshot, int64_t chunk_bytes,
    const std::function<bool()>& cancelled,
    const std::function<bool(const v1::WeightChunk&)>& write);

// The receiving end: Add each chunk in arrival order, then Finish.
// Thread-safety: thread-compatible.
class WeightStreamAssembler {
 public:
  // DataLoss when a chunk is out of order, from another version, or past the total.
  absl::Status Add(const v1::WeightChunk& chunk);
  // The flat weights once the stream is complete and its checksum verifies (over the
  // bytes as sent), in the stream's dtype (float32 or bfloat16: UnflattenInto widens
  // it); DataLoss otherwise. Sets the stream's version and checksum.
  absl::StatusOr<torch::Tensor> Finish(int64_t* version, uint64_t* checksum);

 private:
  std::string bytes_;
  int64_t total_ = -1;  // -1 until the first chunk
  WireDtype dtype_ = WireDtype::kFloat32;
  int64_t version_ = 0;
  uint64_t checksum_ = 0;
};

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_WEIGHT_STREAM_H_
