#include "common/world/render.h"

#include <algorithm>
#include <random>
#include <string_view>

#include "common/world/random.h"

namespace duet::world {
namespace {

using Mask = std::string_view[kMaskPx];

constexpr Mask kCircle = {".####.", "######", "######", "######", "######", ".####."};
constexpr Mask kSquare = {"######", "#....#", "#....#", "#....#", "#....#", "######"};
constexpr Mask kTriangle = {"..##..", "..##..", ".####.", ".####.", "######", "######"};
constexpr Mask kCross = {"..##..", "..##..", "######", "######", "..##..", "..##.."};

const Mask& MaskOf(Shape shape) {
  switch (shape) {
    case Shape::kCircle:
      return kCircle;
    case Shape::kSquare:
      return kSquare;
    case Shape::kTriangle:
      return kTriangle;
    case Shape::kCross:
      return kCross;
  }
  return kCircle;
}

uint8_t Clamp(int v) { return static_cast<uint8_t>(std::clamp(v, 0, 255)); }

}  // namespace

bool ShapeMaskAt(Shape shape, int x, int y) { return MaskOf(shape)[y][x] == '#'; }

Image Render(const Scene& scene, const WorldConfig& config, uint64_t seed) {
  Image image(config.image_px(), config.image_px());
  std::mt19937_64 rng(seed);
  const int centered = (config.cell_px - kMaskPx) / 2;
  for (const Object& o : scene.objects) {
    const int dx = UniformInt(rng, -config.jitter_px, config.jitter_px);
    const int dy = UniformInt(rng, -config.jitter_px, config.jitter_px);
    const Rgb base = PaletteRgb(o.color);
    const int n = config.color_noise;
    const Rgb color{Clamp(base.r + UniformInt(rng, -n, n)),
                    Clamp(base.g + UniformInt(rng, -n, n)),
                    Clamp(base.b + UniformInt(rng, -n, n))};
    const int x0 = o.col * config.cell_px + centered + dx;
    const int y0 = o.row * config.cell_px + centered + dy;
    for (int y = 0; y < kMaskPx; ++y) {
      for (int x = 0; x < kMaskPx; ++x) {
        if (ShapeMaskAt(o.shape, x, y) && image.InBounds(x0 + x, y0 + y)) {
          image.SetPixel(x0 + x, y0 + y, color);
        }
      }
    }
  }
  return image;
}

}  // namespace duet::world
