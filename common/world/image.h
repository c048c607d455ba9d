#ifndef DUET_COMMON_WORLD_IMAGE_H_
#define DUET_COMMON_WORLD_IMAGE_H_

// An 8-bit RGB raster, row-major, three bytes per pixel, no padding.
//
// Thread-safety: a plain value; concurrent reads are safe.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/world/scene.h"

namespace duet::world {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // row-major RGB, size 3 * width * height

  Image() = default;
  // A black image of the given size. REQUIRES: width >= 0, height >= 0.
  Image(int w, int h)
      : width(w),
        height(h),
        rgb(static_cast<size_t>(w) * static_cast<size_t>(h) * 3, 0) {}

  // True if rgb holds exactly width * height pixels.
  bool IsValid() const {
    return width >= 0 && height >= 0 &&
           rgb.size() == static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  }
  bool InBounds(int x, int y) const {
    return x >= 0 && x < width && y >= 0 && y < height;
  }

  // Pixel accessors. REQUIRES: InBounds(x, y); `channel` in [0, 3).
  size_t Offset(int x, int y) const {
    return (static_cast<size_t>(y) * static_cast<size_t>(width) +
            static_cast<size_t>(x)) *
           3;
  }
  uint8_t At(int x, int y, int channel) const { return rgb[Offset(x, y) + channel]; }
  Rgb Pixel(int x, int y) const {
    const size_t i = Offset(x, y);
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }
  void SetPixel(int x, int y, Rgb c) {
    const size_t i = Offset(x, y);
    rgb[i] = c.r;
    rgb[i + 1] = c.g;
    rgb[i + 2] = c.b;
  }

  friend bool operator==(const Image& a, const Image& b) {
    return a.width == b.width && a.height == b.height && a.rgb == b.rgb;
  }
  friend bool operator!=(const Image& a, const Image& b) { return !(a == b); }
};

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_IMAGE_H_
