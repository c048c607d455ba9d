#ifndef DUET_COMMON_WORLD_RANDOM_H_
#define DUET_COMMON_WORLD_RANDOM_H_

// Random helpers whose results are the same with every standard library
// (std::uniform_int_distribution and std::shuffle are implementation-defined), so a seed
// gives the same data everywhere.

#include <cstdint>
#include <random>

namespace duet::world {

// A uniform integer in [lo, hi]. REQUIRES: lo <= hi.
inline int UniformInt(std::mt19937_64& rng, int lo, int hi) {
  const uint64_t span = static_cast<uint64_t>(static_cast<int64_t>(hi) - lo) + 1;
  // Rejection sampling keeps the draw exactly uniform.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return static_cast<int>(static_cast<int64_t>(lo) + static_cast<int64_t>(x % span));
}

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_RANDOM_H_
