#ifndef DUET_COMMON_WORLD_SCENE_H_
#define DUET_COMMON_WORLD_SCENE_H_

// The Shapes world: a small grid of cells, each empty or holding one colored shape.
// This header holds the vocabulary of the world (shapes, colors, their names and
// palette), the scene description and the rendering geometry. Rendering lives in
// render.h, captions in caption.h.
//
// Thread-safety: plain values and pure functions.

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace duet::world {

enum class Shape { kCircle, kSquare, kTriangle, kCross };
enum class Color { kRed, kGreen, kBlue, kYellow, kMagenta, kCyan };

inline constexpr int kNumShapes = 4;
inline constexpr int kNumColors = 6;
inline constexpr std::array<Shape, kNumShapes> kAllShapes = {
    Shape::kCircle, Shape::kSquare, Shape::kTriangle, Shape::kCross};
inline constexpr std::array<Color, kNumColors> kAllColors = {
    Color::kRed,    Color::kGreen,   Color::kBlue,
    Color::kYellow, Color::kMagenta, Color::kCyan};

// "circle", "square", "triangle", "cross".
std::string_view ShapeName(Shape shape);
// "circles", "squares", "triangles", "crosses".
std::string_view ShapePlural(Shape shape);
// "red", "green", "blue", "yellow", "magenta", "cyan".
std::string_view ColorName(Color color);

struct Rgb {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
  friend bool operator==(const Rgb& x, const Rgb& y) {
    return x.r == y.r && x.g == y.g && x.b == y.b;
  }
};

// The nominal color a shape is drawn with (before per-object noise):
// red (220,40,40), green (40,200,60), blue (50,90,230), yellow (230,210,40),
// magenta (210,50,210), cyan (40,210,210).
Rgb PaletteRgb(Color color);

// One object: a colored shape in cell (row, col); row 0 is the top, col 0 the left.
struct Object {
  Color color = Color::kRed;
  Shape shape = Shape::kCircle;
  int row = 0;
  int col = 0;
  friend bool operator==(const Object& x, const Object& y) {
    return x.color == y.color && x.shape == y.shape && x.row == y.row && x.col == y.col;
  }
};

// A scene: at most one object per cell. The order of `objects` carries no meaning.
struct Scene {
  std::vector<Object> objects;
};

// Geometry of the rendered world. The defaults give 24x24 images of a 3x3 grid of 8x8
// cells, cut into 4x4 patches: 6x6 = 36 image tokens per image.
struct WorldConfig {
  int grid = 3;          // cells per side
  int cell_px = 8;       // pixels per cell side
  int patch_px = 4;      // pixels per tokenizer patch side
  int shape_px = 6;      // pixels per shape mask side (the masks are 6x6)
  int jitter_px = 1;     // largest shift of a shape from the centre of its cell, per axis
  int color_noise = 12;  // largest per-channel offset from the palette color

  int image_px() const { return grid * cell_px; }
  int patches_per_side() const { return image_px() / patch_px; }
  int num_patches() const { return patches_per_side() * patches_per_side(); }
};

// OK if `config` is usable: positive sizes, shape_px == 6 (the size of the built-in
// masks), a jittered shape stays inside its cell (shape_px + 2 * jitter_px <= cell_px),
// patch_px divides the image size, color_noise in [0, 255]. InvalidArgument otherwise.
absl::Status ValidateWorldConfig(const WorldConfig& config);

// OK if every object lies inside a `grid` x `grid` board and no two objects share a
// cell; InvalidArgument naming the offending object otherwise.
absl::Status ValidateScene(const Scene& scene, int grid);

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_SCENE_H_
