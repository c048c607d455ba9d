#include "common/world/image_tokenizer.h"

#include <torch/torch.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/base/test_util.h"
#include "common/model/safetensors.h"
#include "common/world/caption.h"
#include "common/world/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::HasSubstr;

std::vector<Image> RenderImages(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Image> images;
  for (int i = 0; i < n; ++i) {
    images.push_back(
        Render(SampleScene(kAllCategories[i % 4], rng), WorldConfig(), rng()));
  }
  return images;
}

class ImageTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<ImageTokenizer> tok =
        ImageTokenizer::Train(RenderImages(/*n=*/300, /*seed=*/1), /*codebook_size=*/64,
                              /*iterations=*/10, /*seed=*/3);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = new ImageTokenizer(*std::move(tok));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }

  static ImageTokenizer* tokenizer_;
  const testing::ScratchDir scratch_{"image_tokenizer_test"};
  const std::string dir_ = scratch_.path();
};

ImageTokenizer* ImageTokenizerTest::tokenizer_ = nullptr;

TEST_F(ImageTokenizerTest, Shape) {
  EXPECT_EQ(tokenizer_->codebook_size(), 64);
  EXPECT_EQ(tokenizer_->patch_dim(), 48);
  EXPECT_EQ(tokenizer_->num_tokens(), 36);
  EXPECT_EQ(tokenizer_->codebook().size(), 64u * 48u);
  // Code 0 is the black patch.
  for (int i = 0; i < 48; ++i) EXPECT_EQ(tokenizer_->codebook()[i], 0.0f);
}

TEST_F(ImageTokenizerTest, EncodeDecodeEncodeIsIdentityOnCodes) {
  std::mt19937_64 rng(/*seed=*/4);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int> codes(36);
    for (int& c : codes) c = static_cast<int>(rng() % 64);
    absl::StatusOr<Image> image = tokenizer_->Decode(codes);
    ASSERT_TRUE(image.ok()) << image.status();
    absl::StatusOr<std::vector<int>> again = tokenizer_->Encode(*image);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, codes);
  }
  // Every code, in every position.
  for (int c = 0; c < 64; ++c) {
    std::vector<int> codes(36, c);
    EXPECT_EQ(tokenizer_->Encode(tokenizer_->Decode(codes).value()).value(), codes);
  }
}

TEST_F(ImageTokenizerTest, ReconstructsRenderedImagesClosely) {
  const std::vector<Image> images = RenderImages(/*n=*/50, /*seed=*/99);
  const Image black(24, 24);
  double error = 0, black_error = 0;
  for (const Image& image : images) {
    absl::StatusOr<std::vector<int>> codes = tokenizer_->Encode(image);
    ASSERT_TRUE(codes.ok()) << codes.status();
    const Image decoded = tokenizer_->Decode(*codes).value();
    for (size_t i = 0; i < image.rgb.size(); ++i) {
      error += std::abs(image.rgb[i] - decoded.rgb[i]);
      black_error += image.rgb[i];
    }
  }
  // Far better than predicting black (even with this small codebook).
  EXPECT_LT(error, 0.5 * black_error);
  // Black stays exactly black.
  EXPECT_EQ(tokenizer_->Encode(black).value(), std::vector<int>(36, 0));
}

TEST_F(ImageTokenizerTest, NoisyImagesUseKMeansAndStillRoundTrip) {
  // Random pixels have far too many on/off patterns for pattern selection.
  std::mt19937_64 rng(/*seed=*/12);
  std::vector<Image> images;
  for (int i = 0; i < 40; ++i) {
    Image image(24, 24);
    for (uint8_t& v : image.rgb) v = static_cast<uint8_t>(rng());
    images.push_back(std::move(image));
  }
  absl::StatusOr<ImageTokenizer> tok =
      ImageTokenizer::Train(images, /*codebook_size=*/32, /*iterations=*/5, /*seed=*/1);
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> codes(36);
    for (int& c : codes) c = static_cast<int>(rng() % 32);
    EXPECT_EQ(tok->Encode(tok->Decode(codes).value()).value(), codes);
  }
  // k-means does better than the mean patch.
  const std::vector<int> codes = tok->Encode(images[0]).value();
  const Image decoded = tok->Decode(codes).value();
  double error = 0, gray_error = 0;
  for (size_t i = 0; i < decoded.rgb.size(); ++i) {
    error += std::pow(decoded.rgb[i] - images[0].rgb[i], 2);
    gray_error += std::pow(127.5 - images[0].rgb[i], 2);
  }
  EXPECT_LT(error, gray_error);
}

TEST_F(ImageTokenizerTest, TrainingIsDeterministic) {
  const std::vector<Image> images = RenderImages(/*n=*/100, /*seed=*/5);
  absl::StatusOr<ImageTokenizer> a = ImageTokenizer::Train(images, /*codebook_size=*/16,
                                                           /*iterations=*/5, /*seed=*/8);
  absl::StatusOr<ImageTokenizer> b = ImageTokenizer::Train(images, /*codebook_size=*/16,
                                                           /*iterations=*/5, /*seed=*/8);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->codebook(), b->codebook());
}

TEST_F(ImageTokenizerTest, SaveLoadRoundTripIsBitExact) {
  const std::string path = dir_ + "/codebook.safetensors";
  ASSERT_TRUE(tokenizer_->Save(path).ok());
  absl::StatusOr<ImageTokenizer> loaded = ImageTokenizer::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->codebook(), tokenizer_->codebook());
  EXPECT_EQ(loaded->codebook_size(), 64);
  EXPECT_EQ(loaded->config().grid, 3);
  EXPECT_EQ(loaded->config().cell_px, 8);
  EXPECT_EQ(loaded->config().patch_px, 4);
  const Image image = RenderImages(/*n=*/1, /*seed=*/6)[0];
  EXPECT_EQ(loaded->Encode(image).value(), tokenizer_->Encode(image).value());
}

TEST_F(ImageTokenizerTest, LoadErrors) {
  EXPECT_EQ(ImageTokenizer::Load(dir_ + "/missing.safetensors").status().code(),
            absl::StatusCode::kNotFound);
  const MetadataMap meta = {{"patch_px", "4"}, {"grid", "3"}, {"cell_px", "8"}};
  const std::string path = dir_ + "/bad.safetensors";

  ASSERT_TRUE(WriteSafetensors(path, {{"codebook", torch::zeros({8, 47})}}, meta).ok());
  absl::Status s = ImageTokenizer::Load(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("shape"));

  ASSERT_TRUE(WriteSafetensors(path, {{"other", torch::zeros({8, 48})}}, meta).ok());
  EXPECT_THAT(ImageTokenizer::Load(path).status().message(),
              HasSubstr("no \"codebook\""));

  ASSERT_TRUE(
      WriteSafetensors(path, {{"codebook", torch::zeros({8, 48}, torch::kInt64)}}, meta)
          .ok());
  EXPECT_THAT(ImageTokenizer::Load(path).status().message(), HasSubstr("dtype"));

  ASSERT_TRUE(WriteSafetensors(path, {{"codebook", torch::zeros({8, 48})}},
                               {{"patch_px", "4"}, {"grid", "3"}})
                  .ok());
  EXPECT_THAT(ImageTokenizer::Load(path).status().message(), HasSubstr("cell_px"));

  ASSERT_TRUE(
      WriteSafetensors(path, {{"codebook", torch::full({8, 48}, 2.0)}}, meta).ok());
  EXPECT_EQ(ImageTokenizer::Load(path).status().code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(WriteSafetensors(path, {{"codebook", torch::zeros({8, 48})}}, meta).ok());
  EXPECT_TRUE(ImageTokenizer::Load(path).ok());
}

TEST_F(ImageTokenizerTest, EncodeDecodeErrors) {
  EXPECT_EQ(tokenizer_->Encode(Image(32, 32)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer_->Decode(std::vector<int>(35, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<int> codes(36, 0);
  codes[7] = 64;
  absl::Status s = tokenizer_->Decode(codes).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("64"));
  codes[7] = -1;
  EXPECT_EQ(tokenizer_->Decode(codes).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(tokenizer_->EncodeBatch({Image(24, 24), Image(8, 8)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTokenizerTest, TrainErrors) {
  const std::vector<Image> images = RenderImages(/*n=*/10, /*seed=*/7);
  EXPECT_EQ(ImageTokenizer::Train(images, /*codebook_size=*/1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageTokenizer::Train(images, /*codebook_size=*/4, /*iterations=*/-1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Too few non-black patches for the codebook.
  EXPECT_EQ(ImageTokenizer::Train({Image(24, 24)}, /*codebook_size=*/4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImageTokenizer::Train({Image(20, 24)}, /*codebook_size=*/4).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet::world
