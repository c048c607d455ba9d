#include "common/world/scene.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/strings.h"

namespace duet::world {

std::string_view ShapeName(Shape shape) {
  switch (shape) {
    case Shape::kCircle:
      return "circle";
    case Shape::kSquare:
      return "square";
    case Shape::kTriangle:
      return "triangle";
    case Shape::kCross:
      return "cross";
  }
  return "?";
}

std::string_view ShapePlural(Shape shape) {
  switch (shape) {
    case Shape::kCircle:
      return "circles";
    case Shape::kSquare:
      return "squares";
    case Shape::kTriangle:
      return "triangles";
    case Shape::kCross:
      return "crosses";
  }
  return "?";
}

std::string_view ColorName(Color color) {
  switch (color) {
    case Color::kRed:
      return "red";
    case Color::kGreen:
      return "green";
    case Color::kBlue:
      return "blue";
    case Color::kYellow:
      return "yellow";
    case Color::kMagenta:
      return "magenta";
    case Color::kCyan:
      return "cyan";
  }
  return "?";
}

Rgb PaletteRgb(Color color) {
  switch (color) {
    case Color::kRed:
      return {220, 40, 40};
    case Color::kGreen:
      return {40, 200, 60};
    case Color::kBlue:
      return {50, 90, 230};
    case Color::kYellow:
      return {230, 210, 40};
    case Color::kMagenta:
      return {210, 50, 210};
    case Color::kCyan:
      return {40, 210, 210};
  }
  return {0, 0, 0};
}

absl::Status ValidateWorldConfig(const WorldConfig& c) {
  if (c.grid <= 0 || c.cell_px <= 0 || c.patch_px <= 0 || c.jitter_px < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("world config needs positive grid, cell_px, patch_px and a ",
                     "non-negative jitter_px; got grid=", c.grid, " cell_px=", c.cell_px,
                     " patch_px=", c.patch_px, " jitter_px=", c.jitter_px));
  }
  if (c.shape_px != 6) {
    return absl::InvalidArgumentError(
        absl::StrCat("world config shape_px is ", c.shape_px,
                     " but the built-in shape masks are 6x6"));
  }
  if (c.shape_px + 2 * c.jitter_px > c.cell_px) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", c.shape_px, "px shape jittered by up to ", c.jitter_px,
                     "px does not fit a ", c.cell_px, "px cell"));
  }
  if (c.image_px() % c.patch_px != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "patch_px ", c.patch_px, " does not divide the image size ", c.image_px()));
  }
  if (c.color_noise < 0 || c.color_noise > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("color_noise ", c.color_noise, " is outside [0, 255]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateScene(const Scene& scene, int grid) {
  std::set<std::pair<int, int>> used;
  for (const Object& o : scene.objects) {
    if (o.row < 0 || o.row >= grid || o.col < 0 || o.col >= grid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "object ", ToAbsl(ColorName(o.color)), " ", ToAbsl(ShapeName(o.shape)), " at (",
          o.row, ",", o.col, ") is outside the ", grid, "x", grid, " grid"));
    }
    if (!used.insert({o.row, o.col}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two objects share cell (", o.row, ",", o.col, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace duet::world
