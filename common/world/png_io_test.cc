#include "common/world/png_io.h"

#include <png.h>

#include <cstdio>
#include <random>
#include <string>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/world/caption.h"
#include "common/world/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::HasSubstr;

class PngIoTest : public ::testing::Test {
 protected:
  const testing::ScratchDir scratch_{"png_io_test"};
  const std::string dir_ = scratch_.path();
};

Image NoiseImage(int w, int h, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Image image(w, h);
  for (uint8_t& v : image.rgb) v = static_cast<uint8_t>(rng());
  return image;
}

// A PNG of the given libpng color type and bit depth, written with libpng directly.
std::string EncodeRaw(int w, int h, int color_type, int bit_depth,
                      const std::vector<uint8_t>& pixels, int row_bytes) {
  std::string out;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep d, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))
            ->append(reinterpret_cast<char*>(d), n);
      },
      nullptr);
  png_set_IHDR(png, info, w, h, bit_depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    png_color palette[2] = {{10, 20, 30}, {200, 100, 50}};
    png_set_PLTE(png, info, palette, 2);
  }
  png_write_info(png, info);
  for (int y = 0; y < h; ++y) {
    png_write_row(png, const_cast<png_bytep>(pixels.data() + y * row_bytes));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

TEST_F(PngIoTest, RoundTripIsBitExact) {
  std::mt19937_64 rng(/*seed=*/5);
  for (int i = 0; i < 20; ++i) {
    const Image rendered =
        Render(SampleScene(kAllCategories[i % 4], rng), WorldConfig(), /*seed=*/i);
    const std::string path = dir_ + "/img" + std::to_string(i) + ".png";
    ASSERT_TRUE(WritePng(path, rendered).ok());
    absl::StatusOr<Image> back = ReadPng(path, /*expect_width=*/24, /*expect_height=*/24);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, rendered);
  }
  const Image noise = NoiseImage(/*w=*/37, /*h=*/5, /*seed=*/9);
  absl::StatusOr<std::string> data = EncodePng(noise);
  ASSERT_TRUE(data.ok());
  absl::StatusOr<Image> back = DecodePng(*data);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, noise);
}

TEST_F(PngIoTest, WrongSizeIsInvalidArgument) {
  const std::string path = dir_ + "/big.png";
  ASSERT_TRUE(WritePng(path, Image(32, 32)).ok());
  absl::StatusOr<Image> image = ReadPng(path, /*expect_width=*/24, /*expect_height=*/24);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(),
              HasSubstr("image is 32x32 but Duet's world needs 24x24"));
  EXPECT_THAT(image.status().message(), HasSubstr(path));
  EXPECT_TRUE(ReadPng(path).ok());
}

TEST_F(PngIoTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadPng(dir_ + "/nope.png").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PngIoTest, TruncatedAndCorruptDataAreErrorsNotCrashes) {
  const std::string good = EncodePng(NoiseImage(24, 24, /*seed=*/1)).value();
  // Every truncation.
  for (size_t n = 0; n < good.size(); ++n) {
    absl::StatusOr<Image> image = DecodePng(good.substr(0, n));
    EXPECT_EQ(image.status().code(), absl::StatusCode::kDataLoss) << n;
  }
  // Flipped bytes after the signature: chunk CRCs catch these.
  std::mt19937_64 rng(/*seed=*/2);
  for (int i = 0; i < 200; ++i) {
    std::string bad = good;
    const size_t at = 8 + rng() % (bad.size() - 8);
    bad[at] ^= static_cast<char>(1 + rng() % 255);
    EXPECT_EQ(DecodePng(bad).status().code(), absl::StatusCode::kDataLoss) << at;
  }
  EXPECT_EQ(DecodePng("definitely not a png").status().code(),
            absl::StatusCode::kDataLoss);
  const std::string path = dir_ + "/trunc.png";
  ASSERT_TRUE(WriteFileAtomically(path, good.substr(0, good.size() / 2)).ok());
  EXPECT_EQ(ReadPng(path).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(PngIoTest, ConvertsOtherFormatsToRgb8) {
  // 8-bit gray.
  std::vector<uint8_t> gray = {0, 50, 100, 255};
  absl::StatusOr<Image> image =
      DecodePng(EncodeRaw(2, 2, PNG_COLOR_TYPE_GRAY, 8, gray, /*row_bytes=*/2));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->Pixel(1, 0), (Rgb{50, 50, 50}));
  // RGBA: alpha dropped.
  std::vector<uint8_t> rgba = {1, 2, 3, 4, 5, 6, 7, 8};
  image = DecodePng(EncodeRaw(2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, /*row_bytes=*/8));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->Pixel(1, 0), (Rgb{5, 6, 7}));
  // 1-bit palette.
  std::vector<uint8_t> pal = {0x40};  // pixels 0, 1
  image = DecodePng(EncodeRaw(2, 1, PNG_COLOR_TYPE_PALETTE, 1, pal, /*row_bytes=*/1));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->Pixel(0, 0), (Rgb{10, 20, 30}));
  EXPECT_EQ(image->Pixel(1, 0), (Rgb{200, 100, 50}));
  // 16-bit RGB: high bytes kept.
  std::vector<uint8_t> rgb16 = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
  image = DecodePng(EncodeRaw(1, 1, PNG_COLOR_TYPE_RGB, 16, rgb16, /*row_bytes=*/6));
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->Pixel(0, 0), (Rgb{0x12, 0x56, 0x9a}));
}

TEST_F(PngIoTest, EncodeRejectsBadImages) {
  EXPECT_EQ(EncodePng(Image()).status().code(), absl::StatusCode::kInvalidArgument);
  Image broken(4, 4);
  broken.rgb.pop_back();
  EXPECT_EQ(EncodePng(broken).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet::world
