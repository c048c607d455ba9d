#ifndef DUET_COMMON_WORLD_INTERNAL_CODEBOOK_H_
#define DUET_COMMON_WORLD_INTERNAL_CODEBOOK_H_

// Private to common/world/: the patch helpers that ImageTokenizer's Train and Encode
// share, and the codebook learning behind Train (pattern selection, k-means, code
// allocation).
//
// Thread-safety: free functions over their arguments.

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "common/world/image.h"
#include "common/world/scene.h"

namespace duet::world::internal {

// OK when `image` has the world's size; InvalidArgument otherwise.
absl::Status CheckImageSize(const Image& image, const WorldConfig& config);

// Copies patch `p` (row-major over patches) of `image` into `out` (patch_dim bytes in
// y, x, channel order).
void ExtractPatch(const Image& image, const WorldConfig& config, int p, uint8_t* out);

// The index in kAllColors of the palette color nearest to the mean of the patch's
// non-black pixels, or -1 for an all-black patch. Codes are learned and searched per
// group, so a patch never changes color.
int ColorGroup(const uint8_t* patch, int d);

// The on/off pattern of a patch of `d` bytes: bit p is set when pixel p is on.
// REQUIRES: d / 3 <= 64.
uint64_t PatternBits(const uint8_t* patch, int d);

// The training patches of one color group.
struct GroupData {
  std::vector<uint8_t> patches;  // non-black patches, patch_dim bytes each
  // How often each arrangement of patterns fills one grid cell (the patches of one
  // object): the PatternBits of the cell's patches in row-major order, 0 for black
  // patches and those of other groups.
  std::map<std::vector<uint64_t>, int64_t> cells;
};

// Splits `total` codes among groups of `sizes` points in proportion to their sizes
// (largest remainder), never giving a group more codes than points.
// REQUIRES: total <= sum(sizes).
std::vector<int64_t> AllocateCodes(const std::vector<int64_t>& sizes, int64_t total);

// The `k` codes of one color group (k * d floats in [0, 1]). Patches of flat-colored
// shapes have few distinct on/off patterns: each pattern that is kept becomes a crisp
// code, its on pixels colored with the mean color of the patches having exactly it, and
// codes left over go to k-means++ samples of the patches. Groups with more patterns get
// k-means with `iterations` Lloyd steps.
// REQUIRES: 1 <= k <= number of patches; d / 3 <= 64. Throws (torch) on failure.
std::vector<float> LearnGroupCodes(const GroupData& group, int d, int64_t k,
                                   int iterations, std::mt19937_64& rng);

// Rounds `centers` to 8-bit values and nudges duplicates (one channel step at a time)
// until all entries differ, so every code is the unique nearest entry to its own decode.
std::vector<uint8_t> QuantizeDistinct(const std::vector<float>& centers, int k, int d);

}  // namespace duet::world::internal

#endif  // DUET_COMMON_WORLD_INTERNAL_CODEBOOK_H_
