#include "common/eval/gallery.h"

#include <string>

#include "common/base/test_util.h"
#include "common/world/png_io.h"
#include "common/world/render.h"
#include "gtest/gtest.h"

namespace duet::eval {
namespace {

class GalleryTest : public ::testing::Test {
 protected:
  const testing::ScratchDir scratch_{"gallery_test"};
  const std::string dir_ = scratch_.path();
};

std::vector<GalleryTile> SomeTiles(int n) {
  std::vector<GalleryTile> tiles;
  for (int i = 0; i < n; ++i) {
    world::Scene scene{{{world::Color::kCyan, world::Shape::kCross, i % 3, (i + 1) % 3}}};
    tiles.push_back({world::Render(scene, world::WorldConfig(), /*seed=*/i),
                     "a cyan cross", i % 2 ? "ok" : "missing red circle; extra (0,1)",
                     i % 2 == 1});
  }
  return tiles;
}

TEST_F(GalleryTest, WritesAPngOfTheExpectedSize) {
  const std::string path = dir_ + "/gallery.png";
  const std::vector<GalleryTile> tiles = SomeTiles(/*n=*/7);
  ASSERT_TRUE(WriteGallery(path, tiles, /*columns=*/3, /*scale=*/4).ok());
  absl::StatusOr<world::Image> composed =
      ComposeGallery(tiles, /*columns=*/3, /*scale=*/4);
  ASSERT_TRUE(composed.ok()) << composed.status();
  absl::StatusOr<world::Image> read = world::ReadPng(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, *composed);
  // Tile: frame 2 + padding 3 on each side around max(96, 31 chars * 6 = 186) x
  // (96 + 2 text lines of 10); 3 columns x 3 rows with 4 px margins.
  const int tile_w = 10 + 186, tile_h = 10 + 96 + 20;
  EXPECT_EQ(read->width, 4 + 3 * (tile_w + 4));
  EXPECT_EQ(read->height, 4 + 3 * (tile_h + 4));
  // Frame colors: tile 0 is wrong (red), tile 1 ok (green).
  EXPECT_EQ(read->Pixel(4, 4), (world::Rgb{220, 40, 40}));
  EXPECT_EQ(read->Pixel(4 + tile_w + 4, 4), (world::Rgb{40, 200, 60}));
  // The image is enlarged by nearest neighbour: every 4x4 block is one color.
  const int ix = 4 + 5 + (186 - 96) / 2, iy = 4 + 5;
  const world::Image& source = tiles[0].image;
  for (int y = 0; y < 96; ++y) {
    for (int x = 0; x < 96; ++x) {
      ASSERT_EQ(read->Pixel(ix + x, iy + y), source.Pixel(x / 4, y / 4));
    }
  }
}

TEST_F(GalleryTest, TextIsDrawn) {
  world::Image blank(40, 10);
  DrawText(blank, 1, 1, "a1", world::Rgb{255, 255, 255});
  int ink = 0;
  for (int y = 0; y < 10; ++y) {
    for (int x = 0; x < 40; ++x) ink += blank.Pixel(x, y).r == 255;
  }
  // 'a' has 18 ink pixels, '1' has 10.
  EXPECT_EQ(ink, 18 + 10);
  // Unknown characters draw as '?', upper case as lower case.
  world::Image q1(8, 8), q2(8, 8), a1(8, 8), a2(8, 8);
  DrawText(q1, 0, 0, "~", world::Rgb{255, 0, 0});
  DrawText(q2, 0, 0, "?", world::Rgb{255, 0, 0});
  DrawText(a1, 0, 0, "A", world::Rgb{255, 0, 0});
  DrawText(a2, 0, 0, "a", world::Rgb{255, 0, 0});
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(a1, a2);
}

TEST_F(GalleryTest, Errors) {
  EXPECT_EQ(ComposeGallery({}, /*columns=*/3, /*scale=*/4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComposeGallery(SomeTiles(2), /*columns=*/0, /*scale=*/4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComposeGallery(SomeTiles(2), /*columns=*/2, /*scale=*/0).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<GalleryTile> tiles = SomeTiles(1);
  tiles[0].image.rgb.resize(5);
  EXPECT_EQ(ComposeGallery(tiles, /*columns=*/1, /*scale=*/1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet::eval
