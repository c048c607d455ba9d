#include "common/eval/gallery.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/world/png_io.h"

namespace duet::eval {
namespace {

struct Glyph {
  char c;
  std::array<const char*, kGlyphHeight> rows;  // '#' = ink
};

// A classic 5x7 font (capital letter forms).
constexpr Glyph kFont[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'a', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'b', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'c', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'d', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
    {'e', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'f', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'g', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'h', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'i', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'j', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'k', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'l', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'m', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'n', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'o', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'p', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'r', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'s', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'t', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'u', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'v', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'w', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'x', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {';', {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'\'', {".##..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
    {'"', {".#.#.", ".#.#.", ".#.#.", ".....", ".....", ".....", "....."}},
    {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
    {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
    {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
    {'*', {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
};

const Glyph& GlyphFor(char c) {
  const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Glyph* question = nullptr;
  for (const Glyph& g : kFont) {
    if (g.c == lower) return g;
    if (g.c == '?') question = &g;
  }
  return *question;
}

// Layout, in pixels.
constexpr int kMargin = 4;   // between tiles and around the gallery
constexpr int kBorder = 2;   // the green / red frame
constexpr int kPadding = 3;  // inside the frame
constexpr int kLineHeight = kGlyphHeight + 3;
constexpr int kMaxSide = 16384;

constexpr world::Rgb kBackground{24, 24, 24};
constexpr world::Rgb kTileBackground{0, 0, 0};
constexpr world::Rgb kText{235, 235, 235};
constexpr world::Rgb kOkFrame{40, 200, 60};
constexpr world::Rgb kWrongFrame{220, 40, 40};

std::string FitLine(const std::string& line) {
  if (static_cast<int>(line.size()) <= kMaxLineChars) return line;
  return line.substr(0, kMaxLineChars - 2) + "..";
}

void FillRect(world::Image& image, int x0, int y0, int w, int h, world::Rgb color) {
  for (int y = std::max(0, y0); y < std::min(image.height, y0 + h); ++y) {
    for (int x = std::max(0, x0); x < std::min(image.width, x0 + w); ++x) {
      image.SetPixel(x, y, color);
    }
  }
}

}  // namespace

void DrawText(world::Image& image, int x, int y, std::string_view text,
              world::Rgb color) {
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = GlyphFor(text[i]);
    const int gx = x + static_cast<int>(i) * kGlyphAdvance;
    for (int r = 0; r < kGlyphHeight; ++r) {
      for (int c = 0; c < kGlyphWidth; ++c) {
        if (g.rows[r][c] == '#' && image.InBounds(gx + c, y + r)) {
          image.SetPixel(gx + c, y + r, color);
        }
      }
    }
  }
}

absl::StatusOr<world::Image> ComposeGallery(const std::vector<GalleryTile>& tiles,
                                            int columns, int scale) {
  if (tiles.empty())
    return absl::InvalidArgumentError("a gallery needs at least one tile");
  if (columns < 1 || scale < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("columns (", columns, ") and scale (", scale, ") must be >= 1"));
  }
  int image_w = 0, image_h = 0, text_chars = 0, lines = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    const GalleryTile& t = tiles[i];
    if (!t.image.IsValid() || static_cast<int64_t>(t.image.width) * scale > kMaxSide ||
        static_cast<int64_t>(t.image.height) * scale > kMaxSide) {
      return absl::InvalidArgumentError(
          absl::StrCat("tile ", i, " has an invalid or too large ", t.image.width, "x",
                       t.image.height, " image"));
    }
    image_w = std::max(image_w, t.image.width * scale);
    image_h = std::max(image_h, t.image.height * scale);
    for (const std::string* line : {&t.line1, &t.line2}) {
      text_chars = std::max(text_chars, static_cast<int>(FitLine(*line).size()));
    }
    lines = std::max(lines, !t.line2.empty() ? 2 : !t.line1.empty() ? 1 : 0);
  }
  const int content_w = std::max(image_w, text_chars * kGlyphAdvance);
  const int tile_w = 2 * (kBorder + kPadding) + content_w;
  const int tile_h = 2 * (kBorder + kPadding) + image_h + lines * kLineHeight;
  const int n = static_cast<int>(tiles.size());
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int64_t width = kMargin + static_cast<int64_t>(cols) * (tile_w + kMargin);
  const int64_t height = kMargin + static_cast<int64_t>(rows) * (tile_h + kMargin);
  if (width > kMaxSide || height > kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat("a gallery of ", width, "x", height,
                                                   " pixels is too large (max ", kMaxSide,
                                                   ")"));
  }
  world::Image out(static_cast<int>(width), static_cast<int>(height));
  FillRect(out, 0, 0, out.width, out.height, kBackground);
  for (int i = 0; i < n; ++i) {
    const GalleryTile& t = tiles[i];
    const int x0 = kMargin + (i % cols) * (tile_w + kMargin);
    const int y0 = kMargin + (i / cols) * (tile_h + kMargin);
    FillRect(out, x0, y0, tile_w, tile_h, t.ok ? kOkFrame : kWrongFrame);
    FillRect(out, x0 + kBorder, y0 + kBorder, tile_w - 2 * kBorder, tile_h - 2 * kBorder,
             kTileBackground);
    const int inner_x = x0 + kBorder + kPadding;
    const int inner_y = y0 + kBorder + kPadding;
    const int ix = inner_x + (content_w - t.image.width * scale) / 2;
    for (int y = 0; y < t.image.height * scale; ++y) {
      for (int x = 0; x < t.image.width * scale; ++x) {
        out.SetPixel(ix + x, inner_y + y, t.image.Pixel(x / scale, y / scale));
      }
    }
    const int text_y = inner_y + image_h + 2;
    DrawText(out, inner_x, text_y, FitLine(t.line1), kText);
    DrawText(out, inner_x, text_y + kLineHeight, FitLine(t.line2), kText);
  }
  return out;
}

absl::Status WriteGallery(const std::string& path, const std::vector<GalleryTile>& tiles,
                          int columns, int scale) {
  DUET_ASSIGN_OR_RETURN(world::Image image, ComposeGallery(tiles, columns, scale));
  return world::WritePng(path, image);
}

}  // namespace duet::eval
