#include "world/caption.h"

#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::HasSubstr;

// Every caption string of the grammar, by category.
std::vector<std::string> AllCaptions(Category category) {
  std::vector<std::string> out;
  std::vector<std::pair<std::string, std::string>> descriptions;  // (singular, plural)
  for (Color c : kAllColors) {
    for (Shape s : kAllShapes) {
      descriptions.emplace_back(
          std::string(ColorName(c)) + " " + std::string(ShapeName(s)),
          std::string(ColorName(c)) + " " + std::string(ShapePlural(s)));
    }
  }
  for (const auto& [a, a_plural] : descriptions) {
    switch (category) {
      case Category::kSingle:
        out.push_back("a " + a);
        break;
      case Category::kCounting:
        out.push_back("two " + a_plural);
        out.push_back("three " + a_plural);
        break;
      case Category::kTwoObjects:
      case Category::kPosition:
        for (const auto& [b, unused] : descriptions) {
          if (a == b) continue;
          if (category == Category::kTwoObjects) {
            out.push_back(absl::StrCat("a ", a, " and a ", b));
          } else {
            for (const char* rel : {"left of", "right of", "above", "below"}) {
              out.push_back(absl::StrCat("a ", a, " ", rel, " a ", b));
            }
          }
        }
        break;
    }
  }
  return out;
}

TEST(CaptionTest, EveryCaptionRoundTrips) {
  const std::vector<size_t> expected_counts = {24, 48, 552, 2208};
  for (Category category : kAllCategories) {
    const std::vector<std::string> all = AllCaptions(category);
    EXPECT_EQ(all.size(), expected_counts[static_cast<int>(category)]);
    std::set<std::string> seen;
    for (const std::string& text : all) {
      absl::StatusOr<Caption> c = ParseCaption(text);
      ASSERT_TRUE(c.ok()) << text << ": " << c.status();
      EXPECT_EQ(c->category, category) << text;
      EXPECT_EQ(FormatCaption(*c), text);
      seen.insert(FormatCaption(*c));
    }
    EXPECT_EQ(seen.size(), all.size());
  }
}

TEST(CaptionTest, ParsesFields) {
  absl::StatusOr<Caption> c = ParseCaption("a red circle left of a blue square");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->category, Category::kPosition);
  EXPECT_EQ(c->a, (Description{Color::kRed, Shape::kCircle}));
  EXPECT_EQ(c->b, (Description{Color::kBlue, Shape::kSquare}));
  EXPECT_EQ(c->relation, Relation::kLeftOf);

  c = ParseCaption("three green crosses");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->category, Category::kCounting);
  EXPECT_EQ(c->count, 3);
  EXPECT_EQ(c->a, (Description{Color::kGreen, Shape::kCross}));
}

TEST(CaptionTest, RejectsBadForms) {
  const std::vector<std::string> bad = {
      "",
      " a red circle",
      "a red circle ",
      "a  red circle",
      "A red circle",
      "a Red circle",
      "a red circle.",
      "a red",
      "a",
      "red circle",
      "an red circle",
      "one red circle",
      "four red circles",
      "a red circles",
      "two red circle",
      "two red",
      "a purple circle",
      "a red dog",
      "a red circle and",
      "a red circle and a",
      "a red circle and a blue",
      "a red circle and blue square",
      "a red circle and a red circle",
      "a red circle left of a red circle",
      "a red circle left a blue square",
      "a red circle left of blue square",
      "a red circle of a blue square",
      "a red circle above of a blue square",
      "a red circle next to a blue square",
      "a red circle and a blue square and a green cross",
      "a red circle a blue square",
      "two red circles and a blue square",
      "a red circle and two blue squares",
      "a red circle\ta blue square",
  };
  for (const std::string& text : bad) {
    absl::StatusOr<Caption> c = ParseCaption(text);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument)
        << "\"" << text << "\"";
  }
}

TEST(CaptionTest, ErrorsNameTheWordAndPosition) {
  absl::Status s = ParseCaption("a red dog").status();
  EXPECT_THAT(s.message(), HasSubstr("\"dog\""));
  EXPECT_THAT(s.message(), HasSubstr("position 3"));
  s = ParseCaption("a red circle next to a blue square").status();
  EXPECT_THAT(s.message(), HasSubstr("\"next\""));
  EXPECT_THAT(s.message(), HasSubstr("position 4"));
  s = ParseCaption("a red").status();
  EXPECT_THAT(s.message(), HasSubstr("ends after word 2"));
  s = ParseCaption("a red circle and a red circle").status();
  EXPECT_THAT(s.message(), HasSubstr("must differ"));
}

Scene MakeScene(std::vector<Object> objects) { return Scene{std::move(objects)}; }

Caption Parse(const std::string& text) {
  absl::StatusOr<Caption> c = ParseCaption(text);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(Caption{});
}

TEST(CaptionTest, SatisfiesSingleAndCounting) {
  const Object red_circle{Color::kRed, Shape::kCircle, 0, 0};
  const Object red_circle2{Color::kRed, Shape::kCircle, 2, 2};
  const Object red_circle3{Color::kRed, Shape::kCircle, 1, 0};
  const Object blue_square{Color::kBlue, Shape::kSquare, 1, 1};
  EXPECT_TRUE(Satisfies(MakeScene({red_circle}), Parse("a red circle")));
  EXPECT_FALSE(Satisfies(MakeScene({}), Parse("a red circle")));
  EXPECT_FALSE(Satisfies(MakeScene({blue_square}), Parse("a red circle")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square}), Parse("a red circle")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, red_circle2}), Parse("a red circle")));

  EXPECT_TRUE(Satisfies(MakeScene({red_circle, red_circle2}), Parse("two red circles")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle}), Parse("two red circles")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, red_circle2, red_circle3}),
                         Parse("two red circles")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square}), Parse("two red circles")));
  EXPECT_TRUE(Satisfies(MakeScene({red_circle, red_circle2, red_circle3}),
                        Parse("three red circles")));
}

TEST(CaptionTest, SatisfiesTwoObjectsAndPosition) {
  const Object red_circle{Color::kRed, Shape::kCircle, 1, 0};
  const Object blue_square{Color::kBlue, Shape::kSquare, 1, 2};
  const Object blue_square_below{Color::kBlue, Shape::kSquare, 2, 0};
  const Object green_cross{Color::kGreen, Shape::kCross, 0, 0};
  const Scene row = MakeScene({blue_square, red_circle});
  EXPECT_TRUE(Satisfies(row, Parse("a red circle and a blue square")));
  EXPECT_TRUE(Satisfies(row, Parse("a blue square and a red circle")));
  EXPECT_FALSE(Satisfies(row, Parse("a red circle and a green cross")));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square, green_cross}),
                         Parse("a red circle and a blue square")));
  EXPECT_TRUE(Satisfies(row, Parse("a red circle left of a blue square")));
  EXPECT_TRUE(Satisfies(row, Parse("a blue square right of a red circle")));
  EXPECT_FALSE(Satisfies(row, Parse("a red circle right of a blue square")));
  EXPECT_FALSE(Satisfies(row, Parse("a red circle above a blue square")));
  EXPECT_FALSE(Satisfies(row, Parse("a red circle below a blue square")));

  const Scene column = MakeScene({red_circle, blue_square_below});
  EXPECT_TRUE(Satisfies(column, Parse("a red circle above a blue square")));
  EXPECT_TRUE(Satisfies(column, Parse("a blue square below a red circle")));
  EXPECT_FALSE(Satisfies(column, Parse("a red circle below a blue square")));
  EXPECT_FALSE(Satisfies(column, Parse("a red circle left of a blue square")));
  // Diagonal: neither in a row nor in a column.
  const Scene diagonal = MakeScene({green_cross, blue_square});
  for (const char* rel : {"left of", "right of", "above", "below"}) {
    EXPECT_FALSE(Satisfies(diagonal,
                           Parse(absl::StrCat("a green cross ", rel, " a blue square"))));
  }
  EXPECT_TRUE(Satisfies(diagonal, Parse("a green cross and a blue square")));
}

TEST(CaptionTest, CanonicalCaptionExamples) {
  // Blue (enum 2) comes after red (enum 0), so red is A.
  Scene s = MakeScene(
      {{Color::kBlue, Shape::kSquare, 0, 0}, {Color::kRed, Shape::kCircle, 0, 2}});
  absl::StatusOr<Caption> c = CanonicalCaption(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(FormatCaption(*c), "a red circle right of a blue square");
  s = MakeScene(
      {{Color::kRed, Shape::kSquare, 2, 1}, {Color::kRed, Shape::kCircle, 0, 1}});
  EXPECT_EQ(FormatCaption(*CanonicalCaption(s)), "a red circle above a red square");
  s = MakeScene(
      {{Color::kRed, Shape::kSquare, 2, 1}, {Color::kRed, Shape::kCircle, 0, 0}});
  EXPECT_EQ(FormatCaption(*CanonicalCaption(s)), "a red circle and a red square");
  s = MakeScene({{Color::kCyan, Shape::kCross, 2, 1},
                 {Color::kCyan, Shape::kCross, 0, 0},
                 {Color::kCyan, Shape::kCross, 1, 1}});
  EXPECT_EQ(FormatCaption(*CanonicalCaption(s)), "three cyan crosses");
}

TEST(CaptionTest, CanonicalCaptionRejectsOtherScenes) {
  const Object a{Color::kRed, Shape::kCircle, 0, 0};
  const Object b{Color::kRed, Shape::kCircle, 0, 1};
  const Object c{Color::kBlue, Shape::kCircle, 0, 2};
  const Object d{Color::kRed, Shape::kCircle, 1, 1};
  for (const Scene& s :
       {MakeScene({}), MakeScene({a, b, c}), MakeScene({a, b, d, c}),
        MakeScene({a, b, d, {Color::kRed, Shape::kCircle, 2, 2}}), MakeScene({a, a})}) {
    EXPECT_EQ(CanonicalCaption(s).status().code(), absl::StatusCode::kInvalidArgument)
        << s.objects.size();
  }
}

TEST(CaptionTest, SampledScenesHaveTheirCategory) {
  std::mt19937_64 rng(/*seed=*/7);
  for (Category category : kAllCategories) {
    std::set<std::string> captions;
    for (int i = 0; i < 2000; ++i) {
      const Scene scene = SampleScene(category, rng);
      ASSERT_TRUE(ValidateScene(scene, /*grid=*/3).ok());
      absl::StatusOr<Caption> c = CanonicalCaption(scene);
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_EQ(c->category, category);
      EXPECT_TRUE(Satisfies(scene, *c)) << FormatCaption(*c);
      EXPECT_EQ(ParseCaption(FormatCaption(*c)).value_or(Caption{}), *c);
      captions.insert(FormatCaption(*c));
    }
    // Sampling reaches many different captions (single: all 24).
    EXPECT_GE(captions.size(), category == Category::kSingle ? 24u : 40u);
  }
}

TEST(CaptionTest, SampledPromptsAreValidAndScenesSatisfyThem) {
  std::mt19937_64 rng(/*seed=*/11);
  std::set<Relation> relations;
  std::set<std::string> two_object_prompts;
  for (Category category : kAllCategories) {
    for (int i = 0; i < 2000; ++i) {
      const Caption c = SampleCaption(category, rng);
      EXPECT_EQ(c.category, category);
      const std::string text = FormatCaption(c);
      absl::StatusOr<Caption> parsed = ParseCaption(text);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(*parsed, c);
      if (category == Category::kPosition) relations.insert(c.relation);
      if (category == Category::kTwoObjects) two_object_prompts.insert(text);
      const Scene scene = SampleSceneFor(c, rng);
      ASSERT_TRUE(ValidateScene(scene, /*grid=*/3).ok());
      EXPECT_TRUE(Satisfies(scene, c)) << text;
    }
  }
  EXPECT_EQ(relations.size(), 4u);
  // Both orders of A and B occur: far more than the 276 unordered pairs.
  EXPECT_GT(two_object_prompts.size(), 400u);
}

TEST(CaptionTest, CategoryNames) {
  for (Category c : kAllCategories) {
    EXPECT_EQ(CategoryFromName(CategoryName(c)).value_or(Category::kSingle), c);
  }
  EXPECT_EQ(CategoryName(Category::kTwoObjects), "two_objects");
  EXPECT_EQ(CategoryFromName("pairs").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet::world
