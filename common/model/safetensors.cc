#include "common/model/safetensors.h"

#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int64_t bytes;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4},   {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},
    {"I32", torch::kInt32, 4},     {"U8", torch::kUInt8, 1},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* FindDtype(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const MetadataMap& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<torch::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  int64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is undefined"));
    }
    const DtypeInfo* info = FindDtype(tensor.scalar_type());
    if (info == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' has dtype ", c10::toString(tensor.scalar_type()),
          ", which safetensors output does not support"));
    }
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const int64_t nbytes = t.numel() * info->bytes;
    header[name] = {{"dtype", info->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(t));
  }
  std::string header_text = header.dump();
  // Pad the header with spaces to an 8-byte boundary, as the reference writer does.
  while (header_text.size() % 8 != 0) header_text.push_back(' ');
  std::string bytes;
  bytes.reserve(8 + header_text.size() + static_cast<size_t>(offset));
  const uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  bytes += header_text;
  for (const auto& t : contiguous) {
    const DtypeInfo* info = FindDtype(t.scalar_type());
    bytes.append(static_cast<const char*>(t.data_ptr()), t.numel() * info->bytes);
  }
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  if (bytes.size() < 8) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated safetensors file (", bytes.size(), " bytes)"));
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  if (n > bytes.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", n,
                                            " runs past the end of the file (",
                                            bytes.size(), " bytes); truncated?"));
  }
  nlohmann::json header =
      nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + n,
                            /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(
        absl::StrCat(path, ": safetensors header is not a JSON object"));
  }
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  SafetensorsFile out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return absl::DataLossError(absl::StrCat(path, ": __metadata__ is not an object"));
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return absl::DataLossError(
              absl::StrCat(path, ": metadata value '", m.key(), "' is not a string"));
        }
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
        !entry.contains("shape") || !entry["shape"].is_array() ||
        !entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "' has a malformed header entry"));
    }
    const std::string dtype = entry["dtype"].get<std::string>();
    const DtypeInfo* info = FindDtype(dtype);
    if (info == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", name, "' has unsupported dtype ", dtype));
    }
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return absl::DataLossError(
            absl::StrCat(path, ": tensor '", name, "' has a malformed shape"));
      }
      shape.push_back(d.get<int64_t>());
      // Bounds the element count (2^52) so that numel * dtype size cannot overflow.
      if (shape.back() > 0 && numel > (int64_t{1} << 52) / shape.back()) {
        return absl::DataLossError(
            absl::StrCat(path, ": tensor '", name, "' has an impossible shape"));
      }
      numel *= shape.back();
    }
    const auto& offs = entry["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned()) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "' has malformed data_offsets"));
    }
    const uint64_t begin = offs[0].get<uint64_t>();
    const uint64_t end = offs[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return absl::DataLossError(absl::StrCat(path, ": tensor '", name, "' data [", begin,
                                              ", ", end, ") lies outside the ", data_size,
                                              " data bytes; truncated?"));
    }
    if (end - begin != static_cast<uint64_t>(numel * info->bytes)) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "' holds ", end - begin,
                       " bytes but its dtype and shape need ", numel * info->bytes));
    }
    ranges.emplace_back(begin, end);
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(info->type));
    if (numel > 0) std::memcpy(t.data_ptr(), data + begin, end - begin);
    out.tensors[name] = std::move(t);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return absl::DataLossError(absl::StrCat(path, ": tensor data ranges overlap"));
    }
  }
  return out;
}

}  // namespace duet
