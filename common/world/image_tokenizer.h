#ifndef DUET_COMMON_WORLD_IMAGE_TOKENIZER_H_
#define DUET_COMMON_WORLD_IMAGE_TOKENIZER_H_

// A vector-quantizing image tokenizer: each image is cut into patch_px x patch_px
// patches (row-major), and each patch becomes the index of the nearest entry of a learned
// codebook of RGB patches. With the default world (24x24 images, 4x4 patches) an image is
// 36 codes and a codebook entry is a 48-dim vector (y, x, channel order) of pixel values
// in [0, 1].
//
// How the codebook is learned (Train):
//   - code 0 is the all-black patch (most of every image is background);
//   - every other patch belongs to the color group of the palette color nearest to the
//     mean of its non-black pixels; the remaining codes are split among the groups in
//     proportion to their patches, learned per group, and Encode searches only the
//     patch's own group (plus black), so a patch never changes color;
//   - a group of flat-colored shapes has few distinct on/off pixel patterns (about 120
//     per color in the default world, for about 85 codes). Codes are crisp patterns:
//     when the patterns do not all fit, a greedy selection drops the patterns whose loss
//     costs least, where a dropped pattern is drawn as its nearest kept one and a grid
//     cell costs the square of its wrong pixels, so damage is spread thinly over many
//     objects instead of wrecking a few. (Plain k-means on these patches blurs patterns
//     together and merges colors: measured 98.2-100% oracle accuracy depending on the
//     seed, against 100% for this selection over ten training sets.)
//   - a group with more than a few hundred distinct patterns (data that is not flat
//     shapes) gets k-means: k-means++ seeding, Lloyd steps with batched distances via
//     torch matmul, empty clusters re-seeded with the farthest points.
// Entries are rounded to 8-bit pixel values and made pairwise distinct, so Decode is
// exact and Encode(Decode(codes)) == codes for every code sequence.
//
// Thread-safety: immutable after construction; Encode/Decode may run concurrently.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/world/image.h"
#include "common/world/scene.h"

namespace duet::world {

class ImageTokenizer {
 public:
  // Learns a codebook of `codebook_size` entries from the patches of `images` (see the
  // file comment); `iterations` bounds the Lloyd steps of groups learned by k-means. The
  // result depends only on the arguments. Takes well under a second for 4000 world
  // images. InvalidArgument for an invalid config, patch_px > 8, codebook_size outside
  // [2, 65536], iterations < 0, an image of the wrong size, or images with fewer than
  // codebook_size - 1 non-black patches in all.
  static absl::StatusOr<ImageTokenizer> Train(const std::vector<Image>& images,
                                              int codebook_size = 512,
                                              int iterations = 20, uint64_t seed = 1,
                                              const WorldConfig& config = WorldConfig());

  // A tokenizer over a given codebook: `codebook` holds codebook_size rows of
  // patch_dim() floats in [0, 1], row-major; entries are rounded to 8-bit values (and
  // Encode(Decode(codes)) == codes only holds if they are then pairwise distinct).
  // InvalidArgument for a wrong size, values outside [0, 1], or an invalid config.
  static absl::StatusOr<ImageTokenizer> FromCodebook(std::vector<float> codebook,
                                                     int codebook_size,
                                                     const WorldConfig& config);

  // Writes the codebook as safetensors: tensor "codebook" [K, patch_dim] F32 and metadata
  // "patch_px", "grid", "cell_px". Atomic (see WriteSafetensors).
  absl::Status Save(const std::string& path) const;

  // Reads a file written by Save. NotFound / DataLoss as ReadSafetensors; InvalidArgument
  // naming what is wrong for a missing "codebook" tensor, a wrong dtype or shape, or
  // missing or malformed metadata. The other WorldConfig fields keep their defaults.
  static absl::StatusOr<ImageTokenizer> Load(const std::string& path);

  // The num_tokens() codes of `image`, each in [0, codebook_size()), patches row-major.
  // Each patch maps to the entry at least squared distance (ties: lowest code) among the
  // black entries and those of the patch's color group (the palette color nearest to the
  // mean of its non-black pixels; an entry's group is computed the same way).
  // InvalidArgument if the image does not have the world's size.
  absl::StatusOr<std::vector<int>> Encode(const Image& image) const;

  // The image made of the codebook entries of `codes`. InvalidArgument if codes.size()
  // != num_tokens(); OutOfRange naming the first code outside [0, codebook_size()).
  absl::StatusOr<Image> Decode(const std::vector<int>& codes) const;

  // Encode / Decode over a batch; the first error is returned, prefixed with its index.
  absl::StatusOr<std::vector<std::vector<int>>> EncodeBatch(
      const std::vector<Image>& images) const;
  absl::StatusOr<std::vector<Image>> DecodeBatch(
      const std::vector<std::vector<int>>& codes) const;

  int codebook_size() const { return codebook_size_; }
  // Floats per codebook entry: patch_px * patch_px * 3.
  int patch_dim() const { return config_.patch_px * config_.patch_px * 3; }
  // Codes per image.
  int num_tokens() const { return config_.num_patches(); }
  const WorldConfig& config() const { return config_; }
  // codebook_size() x patch_dim() floats, row-major; every value is k / 255.
  const std::vector<float>& codebook() const { return codebook_; }

 private:
  ImageTokenizer(const WorldConfig& config, int codebook_size,
                 std::vector<float> codebook);

  WorldConfig config_;
  int codebook_size_ = 0;
  std::vector<float> codebook_;       // codebook_size_ x patch_dim(), values k / 255
  std::vector<uint8_t> codebook_u8_;  // the same entries as 8-bit pixel values
  // group_codes_[g + 1]: the codes of color group g (-1: all-black), ascending.
  std::vector<std::vector<int>> group_codes_;
  std::vector<int> all_codes_;  // 0 .. codebook_size_ - 1
};

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_IMAGE_TOKENIZER_H_
