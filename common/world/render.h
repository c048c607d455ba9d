#ifndef DUET_COMMON_WORLD_RENDER_H_
#define DUET_COMMON_WORLD_RENDER_H_

// Drawing scenes: black background; each object is a 6x6 binary mask inside its cell,
// shifted from the centre by a random jitter in [-jitter_px, jitter_px] per axis, filled
// with its palette color plus a per-object offset uniform in [-color_noise, color_noise]
// per channel (clamped to [0, 255]).
//
// The masks (rows top to bottom, '#' = on) are chosen to be far apart for the oracle:
//   circle   .####.  square  ######  triangle  ..##..  cross  ..##..
//            ######          #....#            ..##..         ..##..
//            ######          #....#            .####.         ######
//            ######          #....#            .####.         ######
//            ######          #....#            ######         ..##..
//            .####.          ######            ######         ..##..
//
// Thread-safety: pure functions.

#include <cstdint>

#include "common/world/image.h"
#include "common/world/scene.h"

namespace duet::world {

// Side of the built-in shape masks.
inline constexpr int kMaskPx = 6;

// True if pixel (x, y) of `shape`'s mask is on. REQUIRES: 0 <= x, y < kMaskPx.
bool ShapeMaskAt(Shape shape, int x, int y);

// Renders `scene`. The same (scene, config, seed) gives the same image everywhere; the
// jitter and color offsets of each object are drawn from a generator seeded with `seed`,
// in the order of scene.objects.
// REQUIRES: ValidateWorldConfig(config) is OK and ValidateScene(scene, config.grid) is OK
// (objects outside the grid are clipped away, not an error).
Image Render(const Scene& scene, const WorldConfig& config, uint64_t seed);

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_RENDER_H_
