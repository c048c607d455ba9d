#include "weights/weight_sync.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include <c10/util/Exception.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"

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
absl::StatusOr<torch::Tensor> AllocateFloats(int64_t numel, torch::Device device) {
  try {
    return torch::empty({numel},
                        torch::TensorOptions().dtype(torch::kFloat32).device(device));
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", numel, " floats on ", device.str()));
  }
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

}  // namespace

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

SerializedWeights SerializeParameters(const std::vector<torch::Tensor>& params) {
  torch::Tensor flat = FlattenParameters(params);
  SerializedWeights out;
  out.checksum = WeightChecksum(flat);
  out.bytes.assign(static_cast<const char*>(flat.data_ptr()), flat.numel() * sizeof(float));
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
  if (!flat.defined() || flat.dim() != 1 || flat.scalar_type() != torch::kFloat32) {
    return absl::InvalidArgumentError("UnflattenInto needs a 1-D float32 tensor");
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
    p.copy_(flat.narrow(/*dim=*/0, offset, n).view(p.sizes()));  // writes the parameter
    offset += n;
  }
  return absl::OkStatus();
}

WeightBroadcaster::WeightBroadcaster(Collective* collective, int64_t bucket_bytes)
    : collective_(collective),
      bucket_numel_(
          std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)))) {
  CHECK(collective_ != nullptr);
}

absl::Status WeightBroadcaster::Broadcast(const std::vector<torch::Tensor>& params,
                                          int64_t version) {
  torch::NoGradGuard no_grad;
  const int root = collective_->rank();
  const torch::Device device = DeviceOf(params);
  torch::Tensor header = torch::empty({kWeightSyncHeaderSize}, torch::kInt64);
  auto h = header.accessor<int64_t, 1>();
  h[kHeaderMagic] = kWeightSyncMagic;
  h[kHeaderVersion] = version;
  h[kHeaderBucketNumel] = bucket_numel_;
  h[kHeaderNumParams] = static_cast<int64_t>(params.size());

  const std::string problem = CheckFloatParams(params);
  if (!problem.empty()) {
    // Tell the receivers, so that every rank leaves this broadcast together.
    h[kHeaderChecksum] = 0;
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
  h[kHeaderChecksum] = static_cast<int64_t>(WeightChecksum(flats));
  h[kHeaderTotalNumel] = total;
  torch::Tensor sent_header = header.to(device);
  DUET_RETURN_IF_ERROR(collective_->Broadcast(sent_header, root));

  const int64_t needed = std::min(bucket_numel_, total);
  if (!bucket_.defined() || bucket_.device() != device || bucket_.numel() < needed) {
    DUET_ASSIGN_OR_RETURN(bucket_, AllocateFloats(needed, device));
  }
  size_t index = 0;    // parameter being packed
  int64_t offset = 0;  // elements of it already packed
  for (int64_t done = 0; done < total;) {
    const int64_t n = std::min(bucket_numel_, total - done);
    while (offset == flats[index].numel()) {  // skips empty and finished parameters
      ++index;
      offset = 0;
    }
    torch::Tensor chunk;
    if (flats[index].numel() - offset >= n) {
      // The bucket lies inside one parameter: send it from there (the root only reads).
      chunk = flats[index].narrow(/*dim=*/0, offset, n);
      offset += n;
    } else {
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
    DUET_RETURN_IF_ERROR(collective_->Broadcast(chunk, root));
    done += n;
  }
  return absl::OkStatus();
}

WeightReceiver::WeightReceiver(Collective* collective, int root)
    : collective_(collective), root_(root) {
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
        "misaligned",
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

  std::string problem = CheckFloatParams(shape_like);
  const int64_t local_total = TotalNumel(shape_like);
  if (problem.empty() &&
      (local_total != total || num_params != static_cast<int64_t>(shape_like.size()))) {
    problem = absl::StrCat("the sender has ", num_params, " parameters of ", total,
                           " elements in all, this model ", shape_like.size(), " of ",
                           local_total);
  }
  if (!problem.empty()) {
    // Consume the buckets anyway, so that every rank stays in step.
    const int64_t needed = std::min(bucket_numel, total);
    if (!drain_.defined() || drain_.device() != device || drain_.numel() < needed) {
      DUET_ASSIGN_OR_RETURN(drain_, AllocateFloats(needed, device));
    }
    for (int64_t done = 0; done < total;) {
      const int64_t n = std::min(bucket_numel, total - done);
      torch::Tensor chunk = drain_.narrow(/*dim=*/0, /*start=*/0, n);
      DUET_RETURN_IF_ERROR(collective_->Broadcast(chunk, root_));
      done += n;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("weight version ", version, " does not fit: ", problem));
  }

  if (!staging->defined() || staging->dim() != 1 || staging->numel() != total ||
      staging->scalar_type() != torch::kFloat32 || staging->device() != device ||
      !staging->is_contiguous()) {
    DUET_ASSIGN_OR_RETURN(*staging, AllocateFloats(total, device));
  }
  // Hashes each bucket as it arrives, while it is still in cache; equal to
  // WeightChecksum(*staging).
  Xxh64 hasher;
  for (int64_t done = 0; done < total;) {
    const int64_t n = std::min(bucket_numel, total - done);
    torch::Tensor chunk = staging->narrow(/*dim=*/0, done, n);  // received in place
    DUET_RETURN_IF_ERROR(collective_->Broadcast(chunk, root_));
    HashInto(chunk, hasher);
    done += n;
  }
  const auto expected = static_cast<uint64_t>(h[kHeaderChecksum]);
  if (const uint64_t actual = hasher.Digest(); actual != expected) {
    return absl::DataLossError(
        absl::StrFormat("weight checksum mismatch in version %d: expected %016x, got "
                        "%016x over %d elements",
                        version, expected, actual, total));
  }
  return version;
}

void WeightReceiver::ApplyStaging(const torch::Tensor& staging,
                                  const std::vector<torch::Tensor>& params) {
  const absl::Status status = UnflattenInto(staging, params);
  CHECK(status.ok()) << "ApplyStaging: " << status;
}

}  // namespace duet
