#include "common/eval/oracle.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/str_split.h"
#include "common/world/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::eval {
namespace {

using ::testing::HasSubstr;
using world::Caption;
using world::Category;
using world::Color;
using world::Object;
using world::Scene;
using world::Shape;

Caption Parse(const std::string& text) {
  absl::StatusOr<Caption> c = world::ParseCaption(text);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(Caption{});
}

world::Image RenderScene(const Scene& scene, uint64_t seed = 1) {
  return world::Render(scene, world::WorldConfig(), seed);
}

// Objects sorted row-major, as ParseImage reports them.
std::vector<Object> Sorted(std::vector<Object> objects) {
  std::sort(objects.begin(), objects.end(), [](const Object& a, const Object& b) {
    return std::make_pair(a.row, a.col) < std::make_pair(b.row, b.col);
  });
  return objects;
}

TEST(OracleTest, GroundTruthScoresPerfectly) {
  std::mt19937_64 rng(/*seed=*/21);
  ShapesEvalReport report;
  for (int i = 0; i < 500; ++i) {
    const Category category = world::kAllCategories[i % 4];
    const Scene scene = world::SampleScene(category, rng);
    const world::Image image = RenderScene(scene, rng());
    const ParsedScene parsed = ParseImage(image);
    EXPECT_EQ(parsed.unrecognized_count(), 0);
    EXPECT_EQ(parsed.scene.objects, Sorted(scene.objects));

    const Caption canonical = world::CanonicalCaption(scene).value();
    const GenerationVerdict g = ScoreGeneration(canonical, image);
    EXPECT_TRUE(g.correct) << world::FormatCaption(canonical) << ": " << g.reason;
    report.Add(Direction::kGeneration, category, g.correct);

    const UnderstandingVerdict u =
        ScoreUnderstanding(scene, world::FormatCaption(canonical));
    EXPECT_TRUE(u.correct) << u.reason;
    report.Add(Direction::kUnderstanding, category, u.correct);

    // A prompt and a scene sampled for it also agree.
    const Caption prompt = world::SampleCaption(category, rng);
    const world::Image drawn = RenderScene(world::SampleSceneFor(prompt, rng), rng());
    EXPECT_TRUE(ScoreGeneration(prompt, drawn).correct) << world::FormatCaption(prompt);
  }
  EXPECT_EQ(report.Accuracy(Direction::kGeneration), 1.0);
  EXPECT_EQ(report.Accuracy(Direction::kUnderstanding), 1.0);
}

TEST(OracleTest, GenerationRejectsWrongImages) {
  const Object red_circle{Color::kRed, Shape::kCircle, 0, 0};
  const Object blue_square{Color::kBlue, Shape::kSquare, 0, 2};
  struct Case {
    std::string prompt;
    Scene scene;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {"a red circle", Scene{{{Color::kGreen, Shape::kCircle, 0, 0}}},
            "missing red circle"},  // wrong color
           {"a red circle", Scene{{{Color::kRed, Shape::kTriangle, 0, 0}}},
            "extra red triangle (0,0)"},  // wrong shape
           {"three red circles", Scene{{red_circle, {Color::kRed, Shape::kCircle, 2, 2}}},
            "missing red circle"},  // wrong count
           {"two red circles",
            Scene{{red_circle,
                   {Color::kRed, Shape::kCircle, 2, 2},
                   {Color::kRed, Shape::kCircle, 1, 1}}},
            "extra red circle"},
           {"a red circle and a blue square", Scene{{red_circle}},
            "missing blue square"},  // missing object
           {"a red circle and a blue square",
            Scene{{red_circle, blue_square, {Color::kCyan, Shape::kCross, 2, 2}}},
            "extra cyan cross (2,2)"},  // extra object
           {"a red circle right of a blue square", Scene{{red_circle, blue_square}},
            "relation not satisfied"},  // violated relation
           {"a red circle above a blue square", Scene{{red_circle, blue_square}},
            "relation not satisfied"},
           {"a red circle", Scene{}, "missing red circle"},
       }) {
    const GenerationVerdict v = ScoreGeneration(Parse(c.prompt), RenderScene(c.scene));
    EXPECT_FALSE(v.correct) << c.prompt;
    EXPECT_THAT(v.reason, HasSubstr(c.reason)) << c.prompt;
  }
}

TEST(OracleTest, UnrecognizedCellsFailGeneration) {
  // A lit blob that is no shape: a diagonal line through cell (1,2).
  world::Image image = RenderScene(Scene{{{Color::kRed, Shape::kCircle, 0, 0}}});
  for (int i = 0; i < 8; ++i)
    image.SetPixel(16 + i, 8 + i, world::PaletteRgb(Color::kBlue));
  GenerationVerdict v = ScoreGeneration(Parse("a red circle"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (1,2)"));
  EXPECT_EQ(v.parsed.unrecognized_count(), 1);

  // A shape in a color far from the palette: gray.
  image = RenderScene(Scene{{{Color::kRed, Shape::kCross, 1, 1}}});
  for (int y = 8; y < 16; ++y) {
    for (int x = 8; x < 16; ++x) {
      if (image.Pixel(x, y).r > 0) image.SetPixel(x, y, world::Rgb{128, 128, 128});
    }
  }
  v = ScoreGeneration(Parse("a red cross"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (1,1)"));

  // Stray pixels in an empty cell are an unrecognized object, however few.
  image = RenderScene(Scene{{{Color::kRed, Shape::kCross, 1, 1}}});
  image.SetPixel(2, 20, world::Rgb{255, 255, 255});
  v = ScoreGeneration(Parse("a red cross"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (2,0)"));

  // Wrong size.
  v = ScoreGeneration(Parse("a red cross"), world::Image(32, 32));
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("32x32"));
}

// Near-misses that the oracle once accepted (minimum of 6 lit pixels per cell, shape IoU
// >= 0.5, mean colour only): each is now an unrecognized object that fails the prompt.
TEST(OracleTest, NearMissesFailGeneration) {
  const world::Rgb red = world::PaletteRgb(Color::kRed);
  const world::Rgb blue = world::PaletteRgb(Color::kBlue);
  // Lights `shape`'s mask at the centre of cell (1,1) (cell origin (8,8), offset 1) in
  // `rgb`, keeping the mask pixels for which keep(x, y) holds.
  auto draw = [](world::Image* image, Shape shape, world::Rgb rgb, auto keep) {
    int lit = 0;
    for (int y = 0; y < world::kMaskPx; ++y) {
      for (int x = 0; x < world::kMaskPx; ++x) {
        if (world::ShapeMaskAt(shape, x, y) && keep(x, y)) {
          image->SetPixel(9 + x, 9 + y, rgb);
          ++lit;
        }
      }
    }
    return lit;
  };
  const world::WorldConfig config;
  auto blank = [&] { return world::Image(config.image_px(), config.image_px()); };

  // The complete shapes are read (the control).
  world::Image image = blank();
  EXPECT_EQ(draw(&image, Shape::kTriangle, red, [](int, int) { return true; }), 24);
  EXPECT_TRUE(ScoreGeneration(Parse("a red triangle"), image).correct);

  // A triangle cut to its top 16 pixels (rows of 2, 2, 4, 4 and 4 of the 6 below):
  // IoU 16/24 = 0.67 with the triangle mask.
  image = blank();
  EXPECT_EQ(draw(&image, Shape::kTriangle, red,
                 [](int x, int y) { return y < 4 || (y == 4 && x >= 1 && x <= 4); }),
            16);
  GenerationVerdict v = ScoreGeneration(Parse("a red triangle"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (1,1)"));

  // A 41-pixel blob over a circle: the full 6x6 block and 5 pixels below it. IoU with the
  // circle 32/41 = 0.78.
  image = blank();
  for (int y = 0; y < 6; ++y) {
    for (int x = 0; x < 6; ++x) image.SetPixel(9 + x, 9 + y, red);
  }
  for (int x = 0; x < 5; ++x) image.SetPixel(9 + x, 15, red);
  v = ScoreGeneration(Parse("a red circle"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (1,1)"));

  // A right prompt with an extra 5-pixel blob in an empty cell.
  image = RenderScene(Scene{{{Color::kRed, Shape::kCircle, 0, 0}}});
  for (int x = 0; x < 5; ++x) image.SetPixel(17 + x, 20, blue);
  v = ScoreGeneration(Parse("a red circle"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (2,2)"));
  EXPECT_EQ(v.parsed.scene.objects.size(), 1u);

  // A cross in two palette colours: 16 red pixels and the 4 at the right end of its bar
  // blue (the mean colour is within 52 of red).
  image = blank();
  EXPECT_EQ(draw(&image, Shape::kCross, red, [](int x, int) { return x < 4; }), 16);
  EXPECT_EQ(draw(&image, Shape::kCross, blue, [](int x, int) { return x >= 4; }), 4);
  v = ScoreGeneration(Parse("a red cross"), image);
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("unrecognized cell (1,1)"));
}

TEST(OracleTest, UnderstandingRejectsWrongCaptions) {
  const Scene scene{
      {{Color::kRed, Shape::kCircle, 0, 0}, {Color::kBlue, Shape::kSquare, 0, 2}}};
  struct Case {
    std::string caption;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {"a red circle and a blue squar", "not in the grammar"},
           {"a red circle is left of a blue square", "not in the grammar"},
           {"", "not in the grammar"},
           {"a red circle", "misses blue square (0,2)"},
           {"a red circle and a green square", "mentions green square not in the image"},
           {"a red circle and a blue square and", "not in the grammar"},
           {"a red circle right of a blue square", "relation not satisfied"},
           {"a red circle above a blue square", "relation not satisfied"},
           {"two red circles", "mentions red circle"},
           {"a red triangle left of a blue square", "mentions red triangle"},
           {"a red circle and a blue square and a green cross",
            "mentions green cross not in the image"},
           {"two red circles and a blue square", "mentions red circle not in the image"},
           {"two red circles and two blue squares", "not in the grammar"},
       }) {
    const UnderstandingVerdict v = ScoreUnderstanding(scene, c.caption);
    EXPECT_FALSE(v.correct) << c.caption;
    EXPECT_THAT(v.reason, HasSubstr(c.reason)) << c.caption;
  }
  // Any true caption counts, not only the canonical one.
  EXPECT_TRUE(ScoreUnderstanding(scene, "a blue square right of a red circle").correct);
  EXPECT_TRUE(ScoreUnderstanding(scene, "a blue square and a red circle").correct);

  // Mixed (training-only) captions of three-object scenes, in any phrase order.
  const Scene three{{{Color::kYellow, Shape::kSquare, 0, 0},
                     {Color::kRed, Shape::kCross, 1, 1},
                     {Color::kYellow, Shape::kSquare, 2, 2}}};
  EXPECT_TRUE(ScoreUnderstanding(three, "a red cross and two yellow squares").correct);
  EXPECT_TRUE(ScoreUnderstanding(three, "two yellow squares and a red cross").correct);
  const UnderstandingVerdict v =
      ScoreUnderstanding(three, "a red cross and a yellow square");
  EXPECT_FALSE(v.correct);
  EXPECT_THAT(v.reason, HasSubstr("misses yellow square (2,2)"));
}

TEST(OracleTest, ReportLeavesTrainingOnlyCategoriesOut) {
  ShapesEvalReport report;
  report.Add(Direction::kUnderstanding, Category::kSingle, true);
  report.Add(Direction::kUnderstanding, Category::kMixed, false);
  report.Merge(report);
  EXPECT_EQ(report.Total(Direction::kUnderstanding, Category::kMixed), 2);
  EXPECT_EQ(report.Total(Direction::kUnderstanding), 2);
  EXPECT_DOUBLE_EQ(report.Accuracy(Direction::kUnderstanding), 1.0);
  EXPECT_FALSE(report.ToJson()["understanding"].contains("mixed"));
  EXPECT_THAT(report.FormatTable(), ::testing::Not(HasSubstr("mixed")));
}

TEST(OracleTest, ReportCountsAndFormats) {
  ShapesEvalReport report;
  for (int i = 0; i < 10; ++i)
    report.Add(Direction::kGeneration, Category::kSingle, i < 9);
  for (int i = 0; i < 4; ++i)
    report.Add(Direction::kGeneration, Category::kPosition, i < 1);
  report.Add(Direction::kUnderstanding, Category::kCounting, true);
  EXPECT_EQ(report.Total(Direction::kGeneration, Category::kSingle), 10);
  EXPECT_DOUBLE_EQ(report.Accuracy(Direction::kGeneration, Category::kSingle), 0.9);
  EXPECT_DOUBLE_EQ(report.Accuracy(Direction::kGeneration), 10.0 / 14.0);
  EXPECT_DOUBLE_EQ(report.Accuracy(Direction::kUnderstanding, Category::kSingle), 0.0);

  ShapesEvalReport other;
  other.Add(Direction::kUnderstanding, Category::kCounting, false);
  report.Merge(other);
  EXPECT_EQ(report.Total(Direction::kUnderstanding), 2);
  EXPECT_EQ(report.Correct(Direction::kUnderstanding), 1);

  const nlohmann::json j = report.ToJson();
  EXPECT_EQ(j["generation"]["single"]["correct"], 9);
  EXPECT_EQ(j["generation"]["single"]["total"], 10);
  EXPECT_DOUBLE_EQ(j["generation"]["position"]["accuracy"].get<double>(), 0.25);
  EXPECT_EQ(j["understanding"]["overall"]["total"], 2);

  const std::string table = report.FormatTable();
  EXPECT_THAT(table, HasSubstr("90.0%"));
  EXPECT_THAT(table, HasSubstr("two_objects"));
  EXPECT_THAT(table, HasSubstr("overall"));
  // Aligned: every line has the same length.
  std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 6u);
  for (const std::string& line : lines) EXPECT_EQ(line.size(), lines[0].size()) << line;
}

}  // namespace
}  // namespace duet::eval
