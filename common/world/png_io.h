#ifndef DUET_COMMON_WORLD_PNG_IO_H_
#define DUET_COMMON_WORLD_PNG_IO_H_

// PNG files of world images (libpng). Images are always 8-bit RGB in memory; reading
// converts palette, grayscale, 16-bit and alpha PNGs to that (alpha is dropped).
//
// Thread-safety: free functions with no shared state.

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/world/image.h"

namespace duet::world {

// Decodes a PNG held in memory. When `expect_width` / `expect_height` are non-zero the
// image must have that size: InvalidArgument "image is 32x32 but Duet's world needs
// 24x24" otherwise. DataLoss for data that is not a PNG, truncated or corrupt.
absl::StatusOr<Image> DecodePng(std::string_view data, int expect_width = 0,
                                int expect_height = 0);

// Reads and decodes the PNG file at `path`; as DecodePng, with messages naming the file,
// and NotFound when the file does not exist.
absl::StatusOr<Image> ReadPng(const std::string& path, int expect_width = 0,
                              int expect_height = 0);

// Encodes `image` as an 8-bit RGB PNG. InvalidArgument if the image is empty or its
// pixel buffer does not match its size.
absl::StatusOr<std::string> EncodePng(const Image& image);

// Writes `image` to `path` atomically (encoded in memory, then WriteFileAtomically).
absl::Status WritePng(const std::string& path, const Image& image);

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_PNG_IO_H_
