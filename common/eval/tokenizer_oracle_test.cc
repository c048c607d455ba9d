// The image tokenizer's quality bar: the oracle must read a tokenized-then-decoded image
// as it reads the original, for at least 99% of freshly rendered scenes.

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/eval/oracle.h"
#include "common/world/caption.h"
#include "common/world/image_tokenizer.h"
#include "common/world/render.h"
#include "gtest/gtest.h"

namespace duet::eval {
namespace {

TEST(TokenizerOracleTest, DecodedImagesParseLikeTheOriginals) {
  const world::WorldConfig config;
  std::mt19937_64 rng(/*seed=*/2024);
  // Trained like MakeData's default tokenizer, on independent renders.
  std::vector<world::Image> train;
  for (int i = 0; i < 4000; ++i) {
    train.push_back(world::Render(
        world::SampleScene(world::kAllCategories[i % 4], rng, config), config, rng()));
  }
  absl::StatusOr<world::ImageTokenizer> tokenizer =
      world::ImageTokenizer::Train(train, /*codebook_size=*/512, /*iterations=*/20,
                                   /*seed=*/7, config);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  constexpr int kScenes = 2000;
  int parsed_ok = 0, scored_ok = 0;
  for (int i = 0; i < kScenes; ++i) {
    const world::Category category = world::kAllCategories[i % 4];
    const world::Scene scene = world::SampleScene(category, rng, config);
    const world::Image image = world::Render(scene, config, rng());
    absl::StatusOr<std::vector<int>> codes = tokenizer->Encode(image);
    ASSERT_TRUE(codes.ok()) << codes.status();
    absl::StatusOr<world::Image> decoded = tokenizer->Decode(*codes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    // Exact round trip on codes.
    ASSERT_EQ(tokenizer->Encode(*decoded).value(), *codes);

    const ParsedScene original = ParseImage(image, config);
    const ParsedScene roundtrip = ParseImage(*decoded, config);
    parsed_ok += roundtrip.unrecognized_count() == 0 &&
                 roundtrip.scene.objects == original.scene.objects;
    scored_ok +=
        ScoreGeneration(world::CanonicalCaption(scene).value(), *decoded, config).correct;
  }
  const double parse_accuracy = static_cast<double>(parsed_ok) / kScenes;
  const double score_accuracy = static_cast<double>(scored_ok) / kScenes;
  RecordProperty("parse_accuracy", std::to_string(parse_accuracy));
  std::printf("tokenizer round trip: oracle parse accuracy %.4f, verdict accuracy %.4f\n",
              parse_accuracy, score_accuracy);
  EXPECT_GE(parse_accuracy, 0.99);
  EXPECT_GE(score_accuracy, 0.99);
}

}  // namespace
}  // namespace duet::eval
