#include "common/weights/weight_stream.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/weights/weight_sync.h"

namespace duet {

void WeightSnapshot::Set(int64_t version, uint64_t checksum, std::string bytes) {
  absl::MutexLock lock(&mu_);
  version_ = version;
  checksum_ = checksum;
  bytes_ = std::move(bytes);
}

void WeightSnapshot::Get(int64_t* version, uint64_t* checksum, std::string* bytes) const {
  absl::MutexLock lock(&mu_);
  *version = version_;
  *checksum = checksum_;
  *bytes = bytes_;
}

int64_t WeightSnapshot::version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

uint64_t WeightSnapshot::checksum() const {
  absl::MutexLock lock(&mu_);
  return checksum_;
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
  int64_t version = 0;
  uint64_t checksum = 0;
  std::string bytes;
  snapshot.Get(&version, &checksum, &bytes);
  if (bytes.empty()) return absl::UnavailableError("no weights published yet");
  for (int64_t off = 0; off < static_cast<int64_t>(bytes.size()); off += chunk) {
    if (cancelled()) return absl::CancelledError("client went away");
    v1::WeightChunk c;
    c.set_version(version);
    c.set_checksum(checksum);
    c.set_total_bytes(static_cast<int64_t>(bytes.size()));
    c.set_offset(off);
    c.set_data(bytes.substr(off, chunk));
    if (!write(c)) return absl::CancelledError("stream closed");
  }
  return absl::OkStatus();
}

absl::Status WeightStreamAssembler::Add(const v1::WeightChunk& chunk) {
  if (total_ < 0) {
    if (chunk.total_bytes() < 0 || chunk.total_bytes() % 4 != 0) {
      return absl::DataLossError(
          absl::StrCat("weight stream announces ", chunk.total_bytes(), " bytes"));
    }
    total_ = chunk.total_bytes();
    version_ = chunk.version();
    checksum_ = chunk.checksum();
    bytes_.reserve(total_);
  }
  if (chunk.offset() != static_cast<int64_t>(bytes_.size()) ||
      chunk.version() != version_) {
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
  torch::Tensor flat = torch::empty({total_ / 4}, torch::kFloat32);
  std::memcpy(flat.data_ptr<float>(), bytes_.data(), bytes_.size());
  DUET_RETURN_IF_ERROR(VerifyChecksum(flat, checksum_));
  *version = version_;
  *checksum = checksum_;
  return flat;
}

}  // namespace duet
