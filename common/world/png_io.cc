#include "common/world/png_io.h"

#include <png.h>

#include <csetjmp>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet::world {
namespace {

// Images larger than this on either side are refused as corrupt rather than allocated.
constexpr png_uint_32 kMaxSide = 1 << 14;

// State shared with libpng's C callbacks. libpng reports errors by calling ErrorFn,
// which records the message and longjmps back to the setjmp in the caller; everything
// touched after setjmp lives here (not in locals) so longjmp cannot clobber it.
struct PngContext {
  std::string_view input;  // reading: the encoded bytes
  size_t read_pos = 0;
  std::string* output = nullptr;  // writing: where encoded bytes go
  char error[256] = {0};
};

void ErrorFn(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->error, sizeof(ctx->error), "%s", msg);
  png_longjmp(png, 1);
}

void WarningFn(png_structp, png_const_charp) {}

void ReadFn(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->input.size() - ctx->read_pos < n) {
    png_error(png, "unexpected end of data (truncated file)");
  }
  std::memcpy(out, ctx->input.data() + ctx->read_pos, n);
  ctx->read_pos += n;
}

void WriteFn(png_structp png, png_bytep data, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  ctx->output->append(reinterpret_cast<const char*>(data), n);
}

void FlushFn(png_structp) {}

// The part of decoding that runs under setjmp. Returns 0 on success, 1 if libpng failed
// (message in ctx->error), 2 if the size check failed (size in *w, *h). Only trivially
// destructible locals live in this frame.
int DecodeUnderSetjmp(png_structp png, png_infop info, PngContext* ctx, Image* image,
                      std::vector<png_bytep>* rows, int expect_width, int expect_height,
                      png_uint_32* w, png_uint_32* h) {
  if (setjmp(png_jmpbuf(png))) return 1;
  png_set_read_fn(png, ctx, ReadFn);
  png_read_info(png, info);
  *w = png_get_image_width(png, info);
  *h = png_get_image_height(png, info);
  if (*w == 0 || *h == 0 || *w > kMaxSide || *h > kMaxSide) {
    png_error(png, "image size out of range");
  }
  if ((expect_width != 0 && *w != static_cast<png_uint_32>(expect_width)) ||
      (expect_height != 0 && *h != static_cast<png_uint_32>(expect_height))) {
    return 2;
  }
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) png_set_strip_16(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_gray_to_rgb(png);
  }
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
    png_error(png, "cannot convert to 8-bit RGB");
  }
  image->width = static_cast<int>(*w);
  image->height = static_cast<int>(*h);
  image->rgb.assign(static_cast<size_t>(*w) * *h * 3, 0);
  rows->resize(*h);
  for (png_uint_32 y = 0; y < *h; ++y) {
    (*rows)[y] = image->rgb.data() + static_cast<size_t>(y) * *w * 3;
  }
  png_read_image(png, rows->data());
  png_read_end(png, nullptr);
  return 0;
}

int EncodeUnderSetjmp(png_structp png, png_infop info, PngContext* ctx,
                      const Image& image, std::vector<png_bytep>* rows) {
  if (setjmp(png_jmpbuf(png))) return 1;
  png_set_write_fn(png, ctx, WriteFn, FlushFn);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), /*bit_depth=*/8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  // Row filters buy nothing on images this small and flat.
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
  png_write_info(png, info);
  rows->resize(image.height);
  for (int y = 0; y < image.height; ++y) {
    (*rows)[y] = const_cast<png_bytep>(image.rgb.data() + image.Offset(0, y));
  }
  png_write_image(png, rows->data());
  png_write_end(png, nullptr);
  return 0;
}

}  // namespace

absl::StatusOr<Image> DecodePng(std::string_view data, int expect_width,
                                int expect_height) {
  if (data.size() < 8 ||
      png_sig_cmp(reinterpret_cast<png_const_bytep>(data.data()), 0, 8) != 0) {
    return absl::DataLossError("not a PNG (bad signature)");
  }
  PngContext ctx;
  ctx.input = data;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, ErrorFn, WarningFn);
  if (png == nullptr)
    return absl::ResourceExhaustedError("png_create_read_struct failed");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return absl::ResourceExhaustedError("png_create_info_struct failed");
  }
  Image image;
  std::vector<png_bytep> rows;
  png_uint_32 w = 0, h = 0;
  const int rc = DecodeUnderSetjmp(png, info, &ctx, &image, &rows, expect_width,
                                   expect_height, &w, &h);
  png_destroy_read_struct(&png, &info, nullptr);
  if (rc == 1) return absl::DataLossError(absl::StrCat("corrupt PNG: ", ctx.error));
  if (rc == 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", w, "x", h, " but Duet's world needs ",
                     expect_width != 0 ? absl::StrCat(expect_width) : "any width", "x",
                     expect_height != 0 ? absl::StrCat(expect_height) : "any height"));
  }
  return image;
}

absl::StatusOr<Image> ReadPng(const std::string& path, int expect_width,
                              int expect_height) {
  DUET_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
  absl::StatusOr<Image> image = DecodePng(data, expect_width, expect_height);
  if (!image.ok()) {
    return absl::Status(image.status().code(),
                        absl::StrCat(path, ": ", image.status().message()));
  }
  return image;
}

absl::StatusOr<std::string> EncodePng(const Image& image) {
  if (image.width <= 0 || image.height <= 0 || !image.IsValid()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot encode a ", image.width, "x",
                                                   image.height, " image with ",
                                                   image.rgb.size(), " bytes of pixels"));
  }
  std::string out;
  PngContext ctx;
  ctx.output = &out;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, ErrorFn, WarningFn);
  if (png == nullptr)
    return absl::ResourceExhaustedError("png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return absl::ResourceExhaustedError("png_create_info_struct failed");
  }
  std::vector<png_bytep> rows;
  const int rc = EncodeUnderSetjmp(png, info, &ctx, image, &rows);
  png_destroy_write_struct(&png, &info);
  if (rc != 0)
    return absl::InternalError(absl::StrCat("PNG encoding failed: ", ctx.error));
  return out;
}

absl::Status WritePng(const std::string& path, const Image& image) {
  DUET_ASSIGN_OR_RETURN(std::string data, EncodePng(image));
  return WriteFileAtomically(path, data);
}

}  // namespace duet::world
