#ifndef DUET_COMMON_EVAL_GALLERY_H_
#define DUET_COMMON_EVAL_GALLERY_H_

// Picture galleries of evaluation samples: a grid of tiles, each an image enlarged by an
// integer factor (nearest neighbour) with up to two short lines of text under it, framed
// green (correct) or red (wrong). Text uses a built-in 5x7 bitmap font covering a-z
// (drawn as capitals; A-Z map to the same glyphs), 0-9, space and . , : ; - _ ( ) / ! ?
// = + % ' " < > # *; other characters draw as '?'.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/world/image.h"
#include "common/world/scene.h"

namespace duet::eval {

struct GalleryTile {
  world::Image image;
  std::string line1;  // e.g. the prompt or the generated caption
  std::string line2;  // e.g. the verdict's reason
  bool ok = true;     // frame color: green when true, red when false
};

// Glyph size and advance of the built-in font, in pixels.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;
// Lines longer than this are cut (ending in "..").
inline constexpr int kMaxLineChars = 44;

// Draws `text` with its top-left corner at (x, y) in `color`, clipped to the image.
void DrawText(world::Image& image, int x, int y, std::string_view text, world::Rgb color);

// Lays `tiles` out `columns` per row, every image enlarged `scale` times. All tiles get
// the size of the largest (enlarged image, or text line up to kMaxLineChars).
// InvalidArgument for no tiles, columns < 1, scale < 1, an invalid tile image, or a
// gallery larger than 16384 pixels on a side.
absl::StatusOr<world::Image> ComposeGallery(const std::vector<GalleryTile>& tiles,
                                            int columns, int scale);

// ComposeGallery, then WritePng to `path` (atomically).
absl::Status WriteGallery(const std::string& path, const std::vector<GalleryTile>& tiles,
                          int columns, int scale);

}  // namespace duet::eval

#endif  // DUET_COMMON_EVAL_GALLERY_H_
