#ifndef DUET_COMMON_WEIGHTS_WEIGHT_SYNC_H_
#define DUET_COMMON_WEIGHTS_WEIGHT_SYNC_H_

// Weight broadcast from the learner to the rollout/scorer workers after each policy
// update. All parameters are treated as one logical flat float32 array (the tensors in
// order, each flattened in row-major order) and sent in buckets over a Collective, in
// the wire dtype (WireDtype: float32, or bfloat16 where the recipe allows it):
//
//   1. header: int64[kWeightSyncHeaderSize] = {kWeightSyncMagic, version, total_numel,
//      bucket_numel, num_params, keyed, nonce (2 slots), topology, wire dtype},
//      broadcast from the sender;
//   2. ceil(total_numel / bucket_numel) buckets of bucket_numel elements in the wire
//      dtype (the last one shorter), each broadcast from the sender (topology
//      kCollective), or passed down a chain of point-to-point sends (kChain, below);
//   3. trailer: int64[kWeightSyncTrailerSize] = {checksum, tag (2 slots),
//      kWeightSyncTrailerMagic}.
//
// `checksum` is WeightChecksum (plain XXH64) of the flat array as sent (its wire dtype's
// bytes), bit-cast to int64: what the workers' sync results report. With float32 on the
// wire it is also the learner's weights checksum (final_state.json).
//
// bfloat16 on the wire halves the bytes of every sync. The sender rounds each float32
// to the nearest bfloat16 (ties to even); the receivers widen it back exactly, so every
// worker holds the same weights, the learner's rounded to 8 bits of mantissa, while the
// learner keeps training its float32 weights. The gRPC stream (weight_stream.h) serves
// the same rounded values, so a worker holds the same bits whichever path it took. With a
// WeightMacKey the sender sets `keyed` and `tag` is the keyed checksum (weight_mac.h) of
// the header's 64 bytes, the array's bytes and the checksum's 8 bytes, under a fresh
// random nonce; a receiver holding the key accepts nothing without a valid tag, so
// weights injected into the data plane by anyone without the run's secret are refused.
// Both ends digest each bucket on a background thread while the next bucket is on the
// wire (the trailer is why the sender need not hash before sending). A header with
// total_numel < 0 means the sender gave up before sending buckets (no trailer follows).
// The receiver writes the array into a staging buffer and verifies it before anything is
// applied, so that a worker never samples from half-updated, corrupt or injected weights.
//
// kChain: the sender sends each bucket to the first other rank only; every rank
// receives bucket n from the rank before it (the sender, then the other ranks in rank
// order) and forwards it to the next while bucket n + 1 arrives. The sender's link then
// carries each byte once however many receivers there are (Gloo's broadcast sends a
// copy to each), and a broadcast takes about one link's time plus one bucket per hop:
// smaller buckets shorten the pipeline's fill. Each rank verifies the whole array
// against the trailer, so a rank that alters what it forwards is caught by every rank
// after it (DataLoss). A rank that fails mid-chain breaks the chain for the ranks after
// it: their receives fail once it drops the group (a worker does, on any error), or at
// the group's timeout; the sender learns of it at the trailer.

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/weights/collective.h"
#include "common/weights/weight_mac.h"

namespace duet {

inline constexpr int64_t kWeightSyncMagic = 0x4455455457534e34;         // "DUETWSN4"
inline constexpr int64_t kWeightSyncTrailerMagic = 0x4455455457534e45;  // "DUETWSNE"
inline constexpr int kWeightSyncHeaderSize = 10;
inline constexpr int kWeightSyncTrailerSize = 4;
// Positions in the header tensor.
inline constexpr int kHeaderMagic = 0;
inline constexpr int kHeaderVersion = 1;
inline constexpr int kHeaderTotalNumel = 2;
inline constexpr int kHeaderBucketNumel = 3;
inline constexpr int kHeaderNumParams = 4;
inline constexpr int kHeaderKeyed = 5;
inline constexpr int kHeaderNonce = 6;  // two slots: the 16 nonce bytes
inline constexpr int kHeaderTopology = 8;
inline constexpr int kHeaderWireDtype = 9;
// Positions in the trailer tensor.
inline constexpr int kTrailerChecksum = 0;
inline constexpr int kTrailerTag = 1;  // two slots: the 16 tag bytes
inline constexpr int kTrailerMagic = 3;

inline constexpr int64_t kDefaultBucketBytes = int64_t{32} << 20;

// How a WeightBroadcaster's buckets reach the receivers (the header tells them).
enum class BroadcastTopology : int64_t {
  kCollective = 0,  // the Collective's broadcast (Gloo: the root sends to each; NCCL)
  kChain = 1,       // a pipelined chain of point-to-point sends (CPU, large groups)
};

// "collective" or "chain"; InvalidArgument otherwise.
absl::StatusOr<BroadcastTopology> ParseBroadcastTopology(absl::string_view name);

// The dtype of the weights on the wire (the header tells the receivers).
enum class WireDtype : int64_t {
  kFloat32 = 0,   // the learner's weights as they are
  kBFloat16 = 1,  // rounded to bfloat16: half the bytes
};

// "float32" or "bfloat16"; InvalidArgument otherwise.
absl::StatusOr<WireDtype> ParseWireDtype(absl::string_view name);
torch::ScalarType ScalarTypeOf(WireDtype dtype);
// Bytes per element on the wire: 4 or 2.
int64_t WireElementSize(WireDtype dtype);

// 64-bit hash of the raw bytes of `flat` in memory order (XXH64 with seed 0: 8 bytes at
// a time over four independent lanes; several GB/s). Equal on every machine with the
// same byte order. A non-contiguous or CUDA tensor is first copied to contiguous CPU
// memory (slow for large tensors).
// REQUIRES: `flat` defined; float32 in practice, though any dtype hashes its bytes.
uint64_t WeightChecksum(const torch::Tensor& flat);

// WeightChecksum(FlattenParameters(params)) without building the flat copy.
// REQUIRES: every tensor defined and of the same dtype.
uint64_t WeightChecksum(const std::vector<torch::Tensor>& params);

// OK if WeightChecksum(flat) == expected, else DataLoss naming both values.
absl::Status VerifyChecksum(const torch::Tensor& flat, uint64_t expected);

// Sum of numel over `params`.
int64_t TotalNumel(const std::vector<torch::Tensor>& params);

// One new contiguous 1-D float32 tensor holding every parameter in order (detached, on
// the device of the first parameter; CPU when `params` is empty).
// REQUIRES: every tensor defined, float32, all on one device.
torch::Tensor FlattenParameters(const std::vector<torch::Tensor>& params);

// The flattened parameters as raw little-endian bytes in `dtype` (rounded as a broadcast
// in that dtype rounds them), with their checksum: what the gRPC weight stream
// (FetchWeights) sends. The checksum equals a broadcast's of the same weights and dtype.
struct SerializedWeights {
  std::string bytes;
  uint64_t checksum = 0;
  WireDtype dtype = WireDtype::kFloat32;
};
SerializedWeights SerializeParameters(const std::vector<torch::Tensor>& params,
                                      WireDtype dtype = WireDtype::kFloat32);

// Copies `flat` into `params` in order (under NoGradGuard, so leaves that require grad
// are fine), widening bfloat16 exactly. InvalidArgument, and nothing changed, when `flat`
// is not a 1-D float32 or bfloat16 tensor of TotalNumel(params) elements or a parameter
// is not float32.
absl::Status UnflattenInto(const torch::Tensor& flat,
                           const std::vector<torch::Tensor>& params);

// Sending side, on the learner.
//
// Thread-safety: thread-compatible (one Broadcast at a time; it reuses a bucket
// buffer). The Collective must outlive this object and must not be used by anyone else
// while Broadcast runs.
class WeightBroadcaster {
 public:
  // Broadcasts from `collective->rank()`. `bucket_bytes` is rounded down to whole
  // floats (at least one). With `key`, every broadcast carries the keyed checksum;
  // without, only the plain one (tests and the benchmark's baseline).
  // REQUIRES: collective != nullptr.
  // `topology` kChain needs a Collective with StartSend and Recv (c10d's has them).
  // A bucket holds bucket_bytes of float32 parameters whatever `wire_dtype` (so
  // bfloat16 sends half the bytes per bucket, and as many buckets).
  explicit WeightBroadcaster(Collective* collective,
                             int64_t bucket_bytes = kDefaultBucketBytes,
                             std::optional<WeightMacKey> key = std::nullopt,
                             BroadcastTopology topology = BroadcastTopology::kCollective,
                             WireDtype wire_dtype = WireDtype::kFloat32);

  int64_t bucket_numel() const { return bucket_numel_; }

  // Sends the header and then the parameters in buckets: a bucket that lies inside one
  // parameter goes straight from it, the others are packed into a reusable buffer.
  // Blocks until this rank's part of every collective is done. Every other rank must
  // call WeightReceiver::Receive (or run the same collectives) at the same time.
  // InvalidArgument (after telling the receivers, so the sequence stays aligned) when a
  // parameter is undefined or not float32, or the parameters span devices; otherwise
  // the Collective's error.
  // REQUIRES: nobody writes `params` until Broadcast returns.
  absl::Status Broadcast(const std::vector<torch::Tensor>& params, int64_t version);

 private:
  Collective* const collective_;
  const int64_t bucket_numel_;
  const std::optional<WeightMacKey> key_;
  const BroadcastTopology topology_;
  const WireDtype wire_dtype_;
  torch::Tensor bucket_;  // reused flat packing buffer in the wire dtype, bucket_numel_
};

// Receiving side, on every worker.
//
// Thread-safety: thread-compatible (one Receive at a time). The Collective must outlive
// this object.
class WeightReceiver {
 public:
  // Receives what rank `root` broadcasts. With `key`, a broadcast is accepted only with
  // a valid keyed checksum; without, the plain checksum is verified and any tag ignored.
  // REQUIRES: collective != nullptr.
  explicit WeightReceiver(Collective* collective, int root = 0,
                          std::optional<WeightMacKey> key = std::nullopt);

  // Takes part in one WeightBroadcaster::Broadcast: writes the whole flat array into
  // `*staging` as it came (in the header's wire dtype; reused when it already is a
  // tensor of that dtype and the right size on the device of `shape_like`, else
  // reallocated) and verifies the checksum. Returns the
  // version; checksum() is then the array's plain checksum. Nothing but `*staging` is
  // written; apply it with ApplyStaging.
  // Errors: DataLoss on a checksum or tag mismatch, an unkeyed broadcast to a receiver
  // with a key, or a malformed header or trailer; InvalidArgument when
  // the sender's total numel or parameter count disagrees with `shape_like` (the buckets
  // are still consumed, so the next broadcast works); Aborted when the sender gave up;
  // otherwise the Collective's error (after which the group is broken).
  // On any error `*staging` holds no usable weights.
  // REQUIRES: staging != nullptr; `shape_like` all float32 on one device (CPU for gloo).
  absl::StatusOr<int64_t> Receive(const std::vector<torch::Tensor>& shape_like,
                                  torch::Tensor* staging);

  // Copies a staging buffer filled by a successful Receive into `params` (under
  // NoGradGuard; bfloat16 is widened exactly). Callers hold their own lock around it so
  // that no reader sees half-updated weights.
  // REQUIRES: staging.numel() == TotalNumel(params), params float32 (checked; dies if
  // not).
  static void ApplyStaging(const torch::Tensor& staging,
                           const std::vector<torch::Tensor>& params);

  // WeightChecksum of what the last successful Receive wrote (authenticated by the tag
  // when keyed, recomputed otherwise); 0 before any.
  uint64_t checksum() const { return checksum_; }

 private:
  Collective* const collective_;
  const int root_;
  const std::optional<WeightMacKey> key_;
  uint64_t checksum_ = 0;
  torch::Tensor drain_;  // scratch that swallows buckets meant for another shape
};

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_WEIGHT_SYNC_H_
