#ifndef DUET_COMMON_MODEL_SAFETENSORS_H_
#define DUET_COMMON_MODEL_SAFETENSORS_H_

// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors):
// 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the raw little-endian tensor bytes.
//
// Thread-safety: free functions with no shared state.

#include <torch/types.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace duet {

// Ordered by name, as the format's header is.
using TensorMap = std::map<std::string, torch::Tensor>;
using MetadataMap = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  MetadataMap metadata;
};

// Writes `tensors` (any of F32/F16/BF16/I64/I32/U8, contiguous CPU copies are made) to
// `path` atomically: a temporary file in the same folder is written, fsync'ed and renamed
// over `path`, so a reader never sees a half-written file.
absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                              const MetadataMap& metadata = {});

// Reads a whole safetensors file. Returns DataLoss for a truncated or corrupt file
// (header length past the end, bad JSON, offsets out of range or overlapping, a byte
// count that disagrees with dtype and shape), InvalidArgument for an unsupported dtype,
// NotFound when the file does not exist. Tensors come back as CPU tensors of their
// stored dtype.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

}  // namespace duet

#endif  // DUET_COMMON_MODEL_SAFETENSORS_H_
