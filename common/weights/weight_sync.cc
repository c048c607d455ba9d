#include "common/weights/weight_sync.h"

#include <c10/util/Exception.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

// ---- XXH64 (seed 0), streaming so that several tensors hash as one byte array. ----

constexpr uint64_t kP1 = 11400714785074694791ULL;
constexpr uint64_t kP2 = 14029467366897019727ULL;
constexpr uint64_t kP3 = 1609587929392839161ULL;
constexpr uint64_t kP4 = 9650029242287828579ULL;
constexpr uint64_t kP5 = 2870177450012600261ULL;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t Read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;  // little-endian hosts only (x86-64, aarch64): the byte order of the wire
}

inline uint32_t Read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline uint64_t Round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  acc = Rotl(acc, 31);
  return acc * kP1;
}

inline uint64_t MergeRound(uint64_t acc, uint64_t val) {
  acc ^= Round(0, val);
  return acc * kP1 + kP4;
}

class Xxh64 {
 public:
  Xxh64() : v_{kP1 + kP2, kP2, 0, 0 - kP1} {}

  void Update(const void* data, size_t len) {
    const auto* p = static_cast<const unsigned char*>(data);
    const unsigned char* const end = p + len;
    total_ += len;
    if (buffered_ + len < 32) {
      std::memcpy(buffer_ + buffered_, p, len);
      buffered_ += len;
      return;
    }
    if (buffered_ > 0) {  // complete the pending stripe
      const size_t fill = 32 - buffered_;
      std::memcpy(buffer_ + buffered_, p, fill);
      p += fill;
      Stripes(buffer_, 32);
      buffered_ = 0;
    }
    const size_t whole = static_cast<size_t>(end - p) & ~size_t{31};
    Stripes(p, whole);
    p += whole;
    buffered_ = static_cast<size_t>(end - p);
    std::memcpy(buffer_, p, buffered_);
  }

  uint64_t Digest() const {
    uint64_t h;
    if (total_ >= 32) {
      h = Rotl(v_[0], 1) + Rotl(v_[1], 7) + Rotl(v_[2], 12) + Rotl(v_[3], 18);
      for (uint64_t v : v_) h = MergeRound(h, v);
    } else {
      h = kP5;
    }
    h += total_;
    const unsigned char* p = buffer_;
    size_t left = buffered_;
    for (; left >= 8; p += 8, left -= 8) {
      h ^= Round(0, Read64(p));
      h = Rotl(h, 27) * kP1 + kP4;
    }
    if (left >= 4) {
      h ^= static_cast<uint64_t>(Read32(p)) * kP1;
      h = Rotl(h, 23) * kP2 + kP3;
      p += 4;
      left -= 4;
    }
    for (; left > 0; ++p, --left) {
      h ^= (*p) * kP5;
      h = Rotl(h, 11) * kP1;
    }
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
  }

 private:
  // `len` is a multiple of 32: four independent lanes, 8 bytes each per stripe.
  void Stripes(const unsigned char* p, size_t len) {
    uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
    for (const unsigned char* end = p + len; p < end; p += 32) {
      v0 = Round(v0, Read64(p));
      v1 = Round(v1, Read64(p + 8));
      v2 = Round(v2, Read64(p + 16));
      v3 = Round(v3, Read64(p + 24));
    }
    v_[0] = v0;
    v_[1] = v1;
    v_[2] = v2;
    v_[3] = v3;
  }

  uint64_t v_[4];
  unsigned char buffer_[32];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

torch::Tensor HostContiguous(const torch::Tensor& t) {
  torch::Tensor host = t.detach();
  if (!host.device().is_cpu()) host = host.to(torch::kCPU);
  return host.contiguous();
}

void HashInto(const torch::Tensor& t, Xxh64& hasher) {
  const torch::Tensor host = HostContiguous(t);
  const size_t bytes = static_cast<size_t>(host.numel()) * host.element_size();
  if (bytes > 0) hasher.Update(host.data_ptr(), bytes);
}

// Allocation is the one LibTorch call here that can fail on valid input.
absl::StatusOr<torch::Tensor> Allocate(int64_t numel, torch::ScalarType dtype,
                                       torch::Device device) {
  try {
    return torch::empty({numel}, torch::TensorOptions().dtype(dtype).device(device));
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", numel, " ", c10::toString(dtype), " on ", device.str()));
  }
}

// True when `t` can be reused as a buffer of `numel` elements of `dtype` on `device`.
bool Fits(const torch::Tensor& t, int64_t numel, torch::ScalarType dtype,
          torch::Device device) {
  return t.defined() && t.scalar_type() == dtype && t.device() == device &&
         t.numel() >= numel;
}

// What a collective moves for `t`: the same memory, as a dtype every backend carries.
// bfloat16 travels as float16 (same size; the bytes are not interpreted on the way),
// because LibTorch 1.13's Gloo broadcast has no bfloat16 case.
torch::Tensor OnWire(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 ? t.view(torch::kHalf) : t;
}

// Why `params` cannot be sent or received as one float32 array on one device, or "".
std::string CheckFloatParams(const std::vector<torch::Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (!p.defined()) return absl::StrCat("parameter ", i, " is undefined");
    if (p.scalar_type() != torch::kFloat32) {
      return absl::StrCat("parameter ", i, " is ", c10::toString(p.scalar_type()),
                          ", not float32");
    }
    if (p.device() != params[0].device()) {
      return absl::StrCat("parameter ", i, " is on ", p.device().str(),
                          ", parameter 0 on ", params[0].device().str());
    }
  }
  return "";
}

torch::Device DeviceOf(const std::vector<torch::Tensor>& params) {
  return params.empty() || !params[0].defined() ? torch::Device(torch::kCPU)
                                                : params[0].device();
}

// Digests the chunks handed to it, in order, on its own thread.
class DigestLane {
 public:
  explicit DigestLane(std::function<void(const void*, size_t)> consume)
      : consume_(std::move(consume)), thread_([this] { Loop(); }) {}

  ~DigestLane() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  // Digests `chunk` in the background after the previous chunk is done.
  // REQUIRES: nobody writes `chunk` until Wait() returns.
  void Submit(torch::Tensor chunk) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &DigestLane::Idle));
    pending_ = std::move(chunk);
  }

  // Returns when every submitted chunk is digested.
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &DigestLane::Idle));
  }

 private:
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.defined() && !busy_;
  }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pending_.defined() || stop_;
  }

  void Loop() {
    for (;;) {
      torch::Tensor chunk;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &DigestLane::HasWork));
        if (!pending_.defined()) return;  // stop_ and nothing left
        chunk = std::move(pending_);
        pending_ = torch::Tensor();
        busy_ = true;
      }
      // A no-op for the CPU tensors of Gloo; a device tensor is copied by each lane.
      const torch::Tensor host = HostContiguous(chunk);
      const size_t bytes = static_cast<size_t>(host.numel()) * host.element_size();
      if (bytes > 0) consume_(host.data_ptr(), bytes);
      absl::MutexLock lock(&mu_);
      busy_ = false;
    }
  }

  const std::function<void(const void*, size_t)> consume_;
  absl::Mutex mu_;
  torch::Tensor pending_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

// The plain checksum and, with a key, the keyed one of one broadcast, computed in the
// background one chunk at a time, each on its own thread (lane), so that a chunk costs
// the slower of the two rather than their sum: the sender digests chunk n while it is
// on the wire, the receiver while chunk n + 1 arrives. Message for the tag: the header's
// bytes, the chunks' bytes, then the plain checksum's 8 bytes.
class ChunkDigester {
 public:
  // `header` is the int64 header tensor (CPU) as sent.
  // `hash_plain`: compute the plain checksum (the sender always; a receiver without a
  // key, which must check it itself).
  ChunkDigester(const torch::Tensor& header, const WeightMacKey* key, bool hash_plain) {
    if (key != nullptr) {
      WeightMacNonce nonce;
      std::memcpy(nonce.data(), header.data_ptr<int64_t>() + kHeaderNonce, nonce.size());
      mac_.emplace(*key, nonce);
      mac_->Update(header.data_ptr(), kWeightSyncHeaderSize * sizeof(int64_t));
      mac_lane_.emplace([this](const void* p, size_t n) { mac_->Update(p, n); });
    }
    if (hash_plain) {
      xxh_lane_.emplace([this](const void* p, size_t n) { xxh_.Update(p, n); });
    }
  }

  // Digests `chunk` in the background after the previous chunk is done.
  // REQUIRES: nobody writes `chunk` until Wait() returns.
  void Submit(const torch::Tensor& chunk) {
    if (xxh_lane_) xxh_lane_->Submit(chunk);
    if (mac_lane_) mac_lane_->Submit(chunk);
  }

  // Returns when every submitted chunk is digested.
  void Wait() {
    if (xxh_lane_) xxh_lane_->Wait();
    if (mac_lane_) mac_lane_->Wait();
  }

  // After Wait(): the plain checksum (0 unless hash_plain).
  uint64_t Checksum() { return xxh_lane_ ? xxh_.Digest() : 0; }

  // After Wait(): the tag over everything, closed by `checksum`. REQUIRES: a key.
  WeightMacTag Tag(uint64_t checksum) {
    mac_->Update(&checksum, sizeof(checksum));
    return mac_->Final();
  }

 private:
  // Each touched only by its lane's thread between Submit and Wait, and by the caller
  // after Wait (the lane's mutex orders the two).
  Xxh64 xxh_;
  std::optional<WeightMac> mac_;
  // Declared after what they write, so that they stop (join) before it is destroyed.
  std::optional<DigestLane> xxh_lane_;
  std::optional<DigestLane> mac_lane_;
};

// How the buckets of one broadcast travel (the header's topology). kCollective: one
// collective broadcast per bucket. kChain: down the chain root -> the other ranks in
// rank order, each rank forwarding bucket n while bucket n + 1 arrives.
class BucketPath {
 public:
  BucketPath(Collective* collective, int root, BroadcastTopology topology)
      : collective_(collective), root_(root), topology_(topology) {
    if (topology_ != BroadcastTopology::kChain) return;
    std::vector<int> order = {root};
    for (int r = 0; r < collective->world_size(); ++r) {
      if (r != root) order.push_back(r);
    }
    const auto at = std::find(order.begin(), order.end(), collective->rank());
    if (at != order.begin()) prev_ = *(at - 1);
    if (at + 1 != order.end()) next_ = *(at + 1);
  }

  ~BucketPath() { Finish().IgnoreError(); }

  // On the root: sends bucket `index`; returns once `bucket` may be written again.
  absl::Status Send(const torch::Tensor& bucket, int64_t index) {
    torch::Tensor chunk = OnWire(bucket);
    if (topology_ == BroadcastTopology::kCollective) {
      return collective_->Broadcast(chunk, root_);
    }
    if (next_ < 0) return absl::OkStatus();
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<Collective::Pending> send,
                          collective_->StartSend(chunk, next_, Tag(index)));
    return send->Wait();
  }

  // Elsewhere: fills `chunk` with bucket `index` and passes it down the chain. With
  // `stays` (nobody writes `chunk` until Finish) the forward may still be in flight on
  // return; otherwise it is done. `next`, when defined, is where bucket index + 1 will
  // go: its receive is posted before this one is waited for, so that the link never
  // idles between buckets (the next call must be for index + 1 into `next`).
  absl::Status Receive(const torch::Tensor& bucket, int64_t index, bool stays,
                       const torch::Tensor& next_bucket = torch::Tensor()) {
    torch::Tensor chunk = OnWire(bucket);
    if (topology_ == BroadcastTopology::kCollective) {
      return collective_->Broadcast(chunk, root_);
    }
    std::unique_ptr<Collective::Pending> receive = std::move(posted_);
    if (receive == nullptr) {
      DUET_ASSIGN_OR_RETURN(receive, collective_->StartRecv(chunk, prev_, Tag(index)));
    }
    if (next_bucket.defined()) {
      torch::Tensor next = OnWire(next_bucket);
      DUET_ASSIGN_OR_RETURN(posted_, collective_->StartRecv(next, prev_, Tag(index + 1)));
    }
    DUET_RETURN_IF_ERROR(receive->Wait());
    if (next_ < 0) return absl::OkStatus();
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<Collective::Pending> send,
                          collective_->StartSend(chunk, next_, Tag(index)));
    if (!stays) return send->Wait();
    in_flight_.push_back(std::move(send));
    // A few forwards in flight keep the link busy; more would only hold buffers.
    if (in_flight_.size() > kMaxInFlight) return WaitOldest();
    return absl::OkStatus();
  }

  // Waits for the forwards still in flight; the first error.
  absl::Status Finish() {
    absl::Status status;
    posted_.reset();  // none is left after the last bucket; after an error, waited out
    while (!in_flight_.empty()) status.Update(WaitOldest());
    return status;
  }

 private:
  static constexpr size_t kMaxInFlight = 4;

  static int Tag(int64_t index) { return static_cast<int>(index % (int64_t{1} << 30)); }

  absl::Status WaitOldest() {
    std::unique_ptr<Collective::Pending> oldest = std::move(in_flight_.front());
    in_flight_.pop_front();
    return oldest->Wait();
  }

  Collective* const collective_;
  const int root_;
  const BroadcastTopology topology_;
  int prev_ = -1;  // the chain's neighbours; -1: none
  int next_ = -1;
  std::deque<std::unique_ptr<Collective::Pending>> in_flight_;
  std::unique_ptr<Collective::Pending> posted_;  // the next bucket's receive, if posted
};

void PutTag(const WeightMacTag& tag, int64_t* slots) {
  std::memcpy(slots, tag.data(), tag.size());
}

WeightMacTag GetTag(const int64_t* slots) {
  WeightMacTag tag;
  std::memcpy(tag.data(), slots, tag.size());
  return tag;
}

}  // namespace

absl::StatusOr<BroadcastTopology> ParseBroadcastTopology(absl::string_view name) {
  if (name == "collective") return BroadcastTopology::kCollective;
  if (name == "chain") return BroadcastTopology::kChain;
  return absl::InvalidArgumentError(absl::StrCat("unknown broadcast topology \"", name,
                                                 "\" (want collective or chain)"));
}

absl::StatusOr<WireDtype> ParseWireDtype(absl::string_view name) {
  if (name == "float32") return WireDtype::kFloat32;
  if (name == "bfloat16") return WireDtype::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown wire dtype \"", name, "\" (want float32 or bfloat16)"));
}

torch::ScalarType ScalarTypeOf(WireDtype dtype) {
  return dtype == WireDtype::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
}

int64_t WireElementSize(WireDtype dtype) { return dtype == WireDtype::kBFloat16 ? 2 : 4; }

uint64_t WeightChecksum(const torch::Tensor& flat) {
  Xxh64 hasher;
  HashInto(flat, hasher);
  return hasher.Digest();
}

uint64_t WeightChecksum(const std::vector<torch::Tensor>& params) {
  Xxh64 hasher;
  for (const torch::Tensor& p : params) HashInto(p, hasher);
  return hasher.Digest();
}

absl::Status VerifyChecksum(const torch::Tensor& flat, uint64_t expected) {
  const uint64_t actual = WeightChecksum(flat);
  if (actual != expected) {
    return absl::DataLossError(absl::StrFormat(
        "weight checksum mismatch: expected %016x, got %016x over %d elements", expected,
        actual, flat.numel()));
  }
  return absl::OkStatus();
}

int64_t TotalNumel(const std::vector<torch::Tensor>& params) {
  int64_t total = 0;
  for (const torch::Tensor& p : params) total += p.numel();
  return total;
}

SerializedWeights SerializeParameters(const std::vector<torch::Tensor>& params,
                                      WireDtype dtype) {
  torch::Tensor flat = HostContiguous(FlattenParameters(params).to(ScalarTypeOf(dtype)));
  SerializedWeights out;
  out.dtype = dtype;
  out.checksum = WeightChecksum(flat);
  out.bytes.assign(static_cast<const char*>(flat.data_ptr()),
                   flat.numel() * flat.element_size());
  return out;
}

torch::Tensor FlattenParameters(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  if (params.empty()) return torch::empty({0}, torch::kFloat32);
  std::vector<torch::Tensor> flats;
  flats.reserve(params.size());
  for (const torch::Tensor& p : params) flats.push_back(p.detach().reshape({-1}));
  return torch::cat(flats);
}

absl::Status UnflattenInto(const torch::Tensor& flat,
                           const std::vector<torch::Tensor>& params) {
  if (!flat.defined() || flat.dim() != 1 ||
      (flat.scalar_type() != torch::kFloat32 && flat.scalar_type() != torch::kBFloat16)) {
    return absl::InvalidArgumentError(
        "UnflattenInto needs a 1-D float32 or bfloat16 tensor");
  }
  const int64_t total = TotalNumel(params);
  if (flat.numel() != total) {
    return absl::InvalidArgumentError(absl::StrCat("flat tensor has ", flat.numel(),
                                                   " elements, the parameters ", total));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined() || params[i].scalar_type() != torch::kFloat32) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " is undefined or not float32"));
    }
  }
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const torch::Tensor& p : params) {
    const int64_t n = p.numel();
    // Writes the parameter (bfloat16 widens exactly).
    p.copy_(flat.narrow(/*dim=*/0, offset, n).view(p.sizes()));
    offset += n;
  }
  return absl::OkStatus();
}

WeightBroadcaster::WeightBroadcaster(Collective* collective, int64_t bucket_bytes,
                                     std::optional<WeightMacKey> key,
                                     BroadcastTopology topology, WireDtype wire_dtype)
    : collective_(collective),
      bucket_numel_(
          std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)))),
      key_(std::move(key)),
      topology_(topology),
      wire_dtype_(wire_dtype) {
  CHECK(collective_ != nullptr);
}

absl::Status WeightBroadcaster::Broadcast(const std::vector<torch::Tensor>& params,
                                          int64_t version) {
  torch::NoGradGuard no_grad;
  const int root = collective_->rank();
  const torch::Device device = DeviceOf(params);
  torch::Tensor header = torch::zeros({kWeightSyncHeaderSize}, torch::kInt64);
  auto h = header.accessor<int64_t, 1>();
  h[kHeaderMagic] = kWeightSyncMagic;
  h[kHeaderVersion] = version;
  h[kHeaderBucketNumel] = bucket_numel_;
  h[kHeaderNumParams] = static_cast<int64_t>(params.size());
  h[kHeaderTopology] = static_cast<int64_t>(topology_);
  h[kHeaderWireDtype] = static_cast<int64_t>(wire_dtype_);

  const std::string problem = CheckFloatParams(params);
  if (!problem.empty()) {
    // Tell the receivers, so that every rank leaves this broadcast together.
    h[kHeaderTotalNumel] = -1;
    torch::Tensor sent = header.to(device);
    DUET_RETURN_IF_ERROR(collective_->Broadcast(sent, root));
    return absl::InvalidArgumentError(
        absl::StrCat("cannot broadcast weights: ", problem));
  }

  std::vector<torch::Tensor> flats;
  flats.reserve(params.size());
  for (const torch::Tensor& p : params) flats.push_back(p.detach().reshape({-1}));
  const int64_t total = TotalNumel(flats);
  h[kHeaderTotalNumel] = total;
  if (key_) {
    h[kHeaderKeyed] = 1;
    const WeightMacNonce nonce = NewWeightMacNonce();
    std::memcpy(header.data_ptr<int64_t>() + kHeaderNonce, nonce.data(), nonce.size());
  }
  ChunkDigester digester(header, key_ ? &*key_ : nullptr, /*hash_plain=*/true);
  torch::Tensor sent_header = header.to(device);
  DUET_RETURN_IF_ERROR(collective_->Broadcast(sent_header, root));

  const int64_t needed = std::min(bucket_numel_, total);
  const torch::ScalarType wire = ScalarTypeOf(wire_dtype_);
  if (!Fits(bucket_, needed, wire, device)) {
    DUET_ASSIGN_OR_RETURN(bucket_, Allocate(needed, wire, device));
  }
  BucketPath path(collective_, root, topology_);
  size_t index = 0;    // parameter being packed
  int64_t offset = 0;  // elements of it already packed
  for (int64_t done = 0, bucket = 0; done < total; ++bucket) {
    const int64_t n = std::min(bucket_numel_, total - done);
    while (offset == flats[index].numel()) {  // skips empty and finished parameters
      ++index;
      offset = 0;
    }
    torch::Tensor chunk;
    if (wire == torch::kFloat32 && flats[index].numel() - offset >= n) {
      // The bucket lies inside one parameter: send it from there (the root only reads).
      chunk = flats[index].narrow(/*dim=*/0, offset, n);
      offset += n;
    } else {
      // Packed (and rounded to the wire dtype) into the bucket.
      chunk = bucket_.narrow(/*dim=*/0, /*start=*/0, n);
      for (int64_t filled = 0; filled < n;) {
        while (offset == flats[index].numel()) {
          ++index;
          offset = 0;
        }
        const int64_t take = std::min(n - filled, flats[index].numel() - offset);
        chunk.narrow(/*dim=*/0, filled, take)
            .copy_(flats[index].narrow(/*dim=*/0, offset, take));
        filled += take;
        offset += take;
      }
    }
    digester.Submit(chunk);  // hashed while it is on the wire
    const absl::Status sent = path.Send(chunk, bucket);
    digester.Wait();  // before bucket_ is packed again
    DUET_RETURN_IF_ERROR(sent);
    done += n;
  }
  torch::Tensor trailer = torch::zeros({kWeightSyncTrailerSize}, torch::kInt64);
  int64_t* t = trailer.data_ptr<int64_t>();
  const uint64_t checksum = digester.Checksum();
  t[kTrailerChecksum] = static_cast<int64_t>(checksum);
  if (key_) PutTag(digester.Tag(checksum), t + kTrailerTag);
  t[kTrailerMagic] = kWeightSyncTrailerMagic;
  torch::Tensor sent_trailer = trailer.to(device);
  return collective_->Broadcast(sent_trailer, root);
}

WeightReceiver::WeightReceiver(Collective* collective, int root,
                               std::optional<WeightMacKey> key)
    : collective_(collective), root_(root), key_(std::move(key)) {
  CHECK(collective_ != nullptr);
}

absl::StatusOr<int64_t> WeightReceiver::Receive(
    const std::vector<torch::Tensor>& shape_like, torch::Tensor* staging) {
  CHECK(staging != nullptr);
  torch::NoGradGuard no_grad;
  const torch::Device device = DeviceOf(shape_like);
  torch::Tensor header =
      torch::zeros({kWeightSyncHeaderSize},
                   torch::TensorOptions().dtype(torch::kInt64).device(device));
  DUET_RETURN_IF_ERROR(collective_->Broadcast(header, root_));
  header = header.cpu();
  const auto h = header.accessor<int64_t, 1>();
  if (h[kHeaderMagic] != kWeightSyncMagic) {
    return absl::DataLossError(absl::StrFormat(
        "weight sync header has magic %016x, want %016x: the collective sequence is "
        "misaligned or the sender speaks another version",
        h[kHeaderMagic], kWeightSyncMagic));
  }
  const int64_t version = h[kHeaderVersion];
  const int64_t total = h[kHeaderTotalNumel];
  const int64_t bucket_numel = h[kHeaderBucketNumel];
  const int64_t num_params = h[kHeaderNumParams];
  if (total < 0) {
    return absl::AbortedError(
        absl::StrCat("the sender gave up broadcasting weight version ", version));
  }
  if (bucket_numel <= 0) {
    return absl::DataLossError(
        absl::StrCat("weight sync header has bucket_numel ", bucket_numel));
  }
  const int64_t topology = h[kHeaderTopology];
  if (topology != static_cast<int64_t>(BroadcastTopology::kCollective) &&
      topology != static_cast<int64_t>(BroadcastTopology::kChain)) {
    return absl::DataLossError(
        absl::StrCat("weight sync header has an unknown topology ", topology));
  }
  const int64_t wire_dtype = h[kHeaderWireDtype];
  if (wire_dtype != static_cast<int64_t>(WireDtype::kFloat32) &&
      wire_dtype != static_cast<int64_t>(WireDtype::kBFloat16)) {
    return absl::DataLossError(
        absl::StrCat("weight sync header has an unknown wire dtype ", wire_dtype));
  }
  const torch::ScalarType wire = ScalarTypeOf(static_cast<WireDtype>(wire_dtype));
  BucketPath path(collective_, root_, static_cast<BroadcastTopology>(topology));

  std::string problem = CheckFloatParams(shape_like);
  const int64_t local_total = TotalNumel(shape_like);
  if (problem.empty() &&
      (local_total != total || num_params != static_cast<int64_t>(shape_like.size()))) {
    problem = absl::StrCat("the sender has ", num_params, " parameters of ", total,
                           " elements in all, this model ", shape_like.size(), " of ",
                           local_total);
  }
  torch::Tensor trailer =
      torch::zeros({kWeightSyncTrailerSize},
                   torch::TensorOptions().dtype(torch::kInt64).device(device));
  if (!problem.empty()) {
    // Consume the buckets and the trailer anyway, so that every rank stays in step.
    const int64_t needed = std::min(bucket_numel, total);
    if (!Fits(drain_, needed, wire, device)) {
      DUET_ASSIGN_OR_RETURN(drain_, Allocate(needed, wire, device));
    }
    for (int64_t done = 0, bucket = 0; done < total; ++bucket) {
      const int64_t n = std::min(bucket_numel, total - done);
      torch::Tensor chunk = drain_.narrow(/*dim=*/0, /*start=*/0, n);
      DUET_RETURN_IF_ERROR(path.Receive(chunk, bucket, /*stays=*/false));
      done += n;
    }
    DUET_RETURN_IF_ERROR(collective_->Broadcast(trailer, root_));
    return absl::InvalidArgumentError(
        absl::StrCat("weight version ", version, " does not fit: ", problem));
  }

  if (!staging->defined() || staging->dim() != 1 || staging->numel() != total ||
      staging->scalar_type() != wire || staging->device() != device ||
      !staging->is_contiguous()) {
    DUET_ASSIGN_OR_RETURN(*staging, Allocate(total, wire, device));
  }
  const bool keyed = h[kHeaderKeyed] != 0;
  // With a key the tag covers the sender's plain checksum, so there is no need to
  // recompute it; without, the plain checksum is all there is to check.
  ChunkDigester digester(header, key_ && keyed ? &*key_ : nullptr,
                         /*hash_plain=*/!key_);
  absl::Status received = absl::OkStatus();
  for (int64_t done = 0, bucket = 0; done < total && received.ok(); ++bucket) {
    const int64_t n = std::min(bucket_numel, total - done);
    torch::Tensor chunk = staging->narrow(/*dim=*/0, done, n);  // received in place
    const int64_t after = done + n;
    const torch::Tensor next =
        after < total
            ? staging->narrow(/*dim=*/0, after, std::min(bucket_numel, total - after))
            : torch::Tensor();
    received = path.Receive(chunk, bucket, /*stays=*/true, next);
    if (received.ok()) digester.Submit(chunk);  // digested while the next one arrives
    done += n;
  }
  if (received.ok()) received = path.Finish();  // the forwards down the chain
  digester.Wait();
  DUET_RETURN_IF_ERROR(received);
  DUET_RETURN_IF_ERROR(collective_->Broadcast(trailer, root_));
  trailer = trailer.cpu();
  const int64_t* t = trailer.data_ptr<int64_t>();
  if (t[kTrailerMagic] != kWeightSyncTrailerMagic) {
    return absl::DataLossError(
        absl::StrFormat("weight sync trailer has magic %016x, want %016x",
                        t[kTrailerMagic], kWeightSyncTrailerMagic));
  }
  const auto announced = static_cast<uint64_t>(t[kTrailerChecksum]);
  if (key_) {
    if (!keyed) {
      return absl::DataLossError(absl::StrCat(
          "weight version ", version,
          " came without a keyed checksum: refused (a sender without the run's secret)"));
    }
    if (!TagsEqual(digester.Tag(announced), GetTag(t + kTrailerTag))) {
      return absl::DataLossError(absl::StrCat(
          "weight version ", version,
          " failed the keyed checksum: refused (corrupt, or not sent with the run's "
          "secret)"));
    }
  } else if (const uint64_t actual = digester.Checksum(); actual != announced) {
    return absl::DataLossError(
        absl::StrFormat("weight checksum mismatch in version %d: expected %016x, got "
                        "%016x over %d elements",
                        version, announced, actual, total));
  }
  checksum_ = announced;
  return version;
}

void WeightReceiver::ApplyStaging(const torch::Tensor& staging,
                                  const std::vector<torch::Tensor>& params) {
  const absl::Status status = UnflattenInto(staging, params);
  CHECK(status.ok()) << "ApplyStaging: " << status;
}

}  // namespace duet
