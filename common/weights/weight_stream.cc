#include "common/weights/weight_stream.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/weights/weight_sync.h"

namespace duet {
namespace {

v1::WeightDtype ToProto(WireDtype dtype) {
  return dtype == WireDtype::kBFloat16 ? v1::WEIGHT_DTYPE_BFLOAT16
                                       : v1::WEIGHT_DTYPE_FLOAT32;
}

}  // namespace

void WeightSnapshot::Set(int64_t version, SerializedWeights weights) {
  auto published = std::make_shared<const SerializedWeights>(std::move(weights));
  absl::MutexLock lock(&mu_);
  current_.version = version;
  current_.weights = std::move(published);  // a stream reading the old one keeps it
}

WeightSnapshot::Published WeightSnapshot::Get() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

int64_t WeightSnapshot::version() const {
  absl::MutexLock lock(&mu_);
  return current_.version;
}

uint64_t WeightSnapshot::checksum() const {
  absl::MutexLock lock(&mu_);
  return current_.weights ? current_.weights->checksum : 0;
}

absl::Status StreamWeightSnapshot(
    const WeightSnapshot& snapshot, int64_t chunk_bytes,
    const std::function<bool()>& cancelled,
    const std::function<bool(const v1::WeightChunk&)>& write) {
  if (chunk_bytes != 0 &&
      (chunk_bytes < kMinWeightChunkBytes || chunk_bytes > kMaxWeightChunkBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: must be 0 (default) or in [", kMinWeightChunkBytes,
                     ", ", kMaxWeightChunkBytes, "]"));
  }
  const int64_t chunk = chunk_bytes > 0 ? chunk_bytes : kDefaultWeightChunkBytes;
  const WeightSnapshot::Published published = snapshot.Get();
  if (!published.weights || published.weights->bytes.empty()) {
    return absl::UnavailableError("no weights published yet");
  }
  const std::string& bytes = published.weights->bytes;
  for (int64_t off = 0; off < static_cast<int64_t>(bytes.size()); off += chunk) {
    if (cancelled()) return absl::CancelledError("client went away");
    v1::WeightChunk c;
    c.set_version(published.version);
    c.set_checksum(published.weights->checksum);
    c.set_dtype(ToProto(published.weights->dtype));
    c.set_total_bytes(static_cast<int64_t>(bytes.size()));
    c.set_offset(off);
    c.set_data(bytes.substr(off, chunk));
    if (!write(c)) return absl::CancelledError("stream closed");
  }
  return absl::OkStatus();
}

absl::Status WeightStreamAssembler::Add(const v1::WeightChunk& chunk) {
  if (total_ < 0) {
    if (chunk.dtype() != v1::WEIGHT_DTYPE_FLOAT32 &&
        chunk.dtype() != v1::WEIGHT_DTYPE_BFLOAT16) {
      return absl::DataLossError(
          absl::StrCat("weight stream has an unknown dtype ", chunk.dtype()));
    }
    dtype_ = chunk.dtype() == v1::WEIGHT_DTYPE_BFLOAT16 ? WireDtype::kBFloat16
                                                        : WireDtype::kFloat32;
    if (chunk.total_bytes() < 0 || chunk.total_bytes() % WireElementSize(dtype_) != 0) {
      return absl::DataLossError(
          absl::StrCat("weight stream announces ", chunk.total_bytes(), " bytes"));
    }
    total_ = chunk.total_bytes();
    version_ = chunk.version();
    checksum_ = chunk.checksum();
    bytes_.reserve(total_);
  }
  if (chunk.offset() != static_cast<int64_t>(bytes_.size()) ||
      chunk.version() != version_ || chunk.dtype() != ToProto(dtype_)) {
    return absl::DataLossError("weight stream chunks out of order or from two versions");
  }
  if (static_cast<int64_t>(bytes_.size() + chunk.data().size()) > total_) {
    return absl::DataLossError("weight stream sent more bytes than it announced");
  }
  bytes_ += chunk.data();
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> WeightStreamAssembler::Finish(int64_t* version,
                                                            uint64_t* checksum) {
  if (total_ < 0 || static_cast<int64_t>(bytes_.size()) != total_) {
    return absl::DataLossError(absl::StrCat("weight stream ended after ", bytes_.size(),
                                            " of ", total_, " bytes"));
  }
  torch::Tensor flat =
      torch::empty({total_ / WireElementSize(dtype_)}, ScalarTypeOf(dtype_));
  std::memcpy(flat.data_ptr(), bytes_.data(), bytes_.size());
  DUET_RETURN_IF_ERROR(VerifyChecksum(flat, checksum_));
  *version = version_;
  *checksum = checksum_;
  return flat;
}

}  // namespace duet
