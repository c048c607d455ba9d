#include "common/world/caption.h"

#include <algorithm>
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
      case Category::kMixed:
        for (const auto& [b, b_plural] : descriptions) {
          if (a == b) continue;
          out.push_back(absl::StrCat("two ", a_plural, " and a ", b));
          out.push_back(absl::StrCat("a ", a, " and two ", b_plural));
          for (const auto& [c, unused] : descriptions) {
            if (c == a || c == b) continue;
            out.push_back(absl::StrCat("a ", a, " and a ", b, " and a ", c));
          }
        }
        break;
    }
  }
  return out;
}

std::vector<Category> CategoriesWithMixed() {
  std::vector<Category> out(kAllCategories.begin(), kAllCategories.end());
  out.insert(out.end(), kTrainingOnlyCategories.begin(), kTrainingOnlyCategories.end());
  return out;
}

TEST(CaptionTest, EveryCaptionRoundTrips) {
  const std::vector<size_t> expected_counts = {24, 48, 552, 2208, 13248};
  size_t longest = 0;
  for (Category category : CategoriesWithMixed()) {
    const std::vector<std::string> all = AllCaptions(category);
    EXPECT_EQ(all.size(), expected_counts[static_cast<int>(category)]);
    std::set<std::string> seen;
    for (const std::string& text : all) {
      absl::StatusOr<Caption> c = ParseCaption(text);
      ASSERT_TRUE(c.ok()) << text << ": " << c.status();
      EXPECT_EQ(c->category, category) << text;
      EXPECT_EQ(FormatCaption(*c), text);
      seen.insert(FormatCaption(*c));
      longest = std::max<size_t>(longest, std::count(text.begin(), text.end(), ' ') + 1);
    }
    EXPECT_EQ(seen.size(), all.size());
  }
  // Fits the model's caption budget (max_caption_tokens = 12, one token per word).
  EXPECT_EQ(longest, 11u);
}

TEST(CaptionTest, ExistingFormsKeepTheirCategory) {
  EXPECT_EQ(ParseCaption("a red circle")->category, Category::kSingle);
  EXPECT_EQ(ParseCaption("two blue squares")->category, Category::kCounting);
  EXPECT_EQ(ParseCaption("three blue squares")->category, Category::kCounting);
  EXPECT_EQ(ParseCaption("a red circle and a blue square")->category,
            Category::kTwoObjects);
  EXPECT_EQ(ParseCaption("a red circle above a blue square")->category,
            Category::kPosition);
  for (const char* text :
       {"a red circle", "two blue squares", "a red circle and a blue square"}) {
    EXPECT_TRUE(ParseCaption(text)->phrases.empty()) << text;
  }
}

TEST(CaptionTest, RelationVariantsChangeOnlyThePositionCaptionsRelation) {
  auto texts = [](const std::vector<Caption>& cs) {
    std::vector<std::string> out;
    for (const Caption& c : cs) out.push_back(FormatCaption(c));
    return out;
  };
  EXPECT_THAT(texts(RelationVariants(*ParseCaption("a red circle above a blue square"))),
              ::testing::ElementsAre("a red circle left of a blue square",
                                     "a red circle right of a blue square",
                                     "a red circle below a blue square"));
  for (const char* other :
       {"a red circle", "two blue squares", "a green cross and a red circle",
        "a red circle and two blue squares"}) {
    EXPECT_TRUE(RelationVariants(*ParseCaption(other)).empty()) << other;
  }
}

TEST(CaptionTest, ParsesMixedFields) {
  absl::StatusOr<Caption> c = ParseCaption("a red cross and two yellow squares");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->category, Category::kMixed);
  EXPECT_EQ(c->phrases, (std::vector<Phrase>{{{Color::kRed, Shape::kCross}, 1},
                                             {{Color::kYellow, Shape::kSquare}, 2}}));
  EXPECT_EQ(c->NumObjects(), 3);
  EXPECT_EQ(c->a, Description{});
  EXPECT_EQ(c->count, 1);

  c = ParseCaption("a red circle and a blue square and a green cross");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->category, Category::kMixed);
  ASSERT_EQ(c->phrases.size(), 3u);
  EXPECT_EQ(c->phrases[2], (Phrase{{Color::kGreen, Shape::kCross}, 1}));
  EXPECT_EQ(CategoryName(Category::kMixed), "mixed");
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
      "a red circle a blue square",
      "a red circle\ta blue square",
      // Mixed lists: more than 3 objects, repeated kinds, "three" in a list, other forms.
      "two red circles and two blue squares",
      "a red circle and two blue squares and a green cross",
      "two red circles and a blue square and a green cross",
      "a red circle and a blue square and two green crosses",
      "a red circle and a blue square and a green cross and a cyan triangle",
      "a red circle and a red circle and a blue square",
      "a red circle and a blue square and a red circle",
      "two red circles and a red circle",
      "a red circle and two red circles",
      "three red circles and a blue square",
      "a red circle and three blue squares",
      "a red circle and a blue square and three green crosses",
      "two red circles left of a blue square",
      "a red circle left of a blue square and a green cross",
      "a red circle and a blue square left of a green cross",
      "two red circles and",
      "two red circles and a",
      "two red circles and a blue",
      "two red circles a blue square",
      "a red circle and a blue squares",
      "a red circle and two blue square",
      "two red circles and blue square",
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
  s = ParseCaption("a red circle and two blue squares and a green cross").status();
  EXPECT_THAT(s.message(), HasSubstr("\"and\" at position 8"));
  s = ParseCaption("two red circles and two blue squares").status();
  EXPECT_THAT(s.message(), HasSubstr("\"two\" at position 5"));
  s = ParseCaption("a red circle and two red circles").status();
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
  // The reward-hacking scene: a red cross and two yellow squares.
  s = MakeScene({{Color::kYellow, Shape::kSquare, 0, 0},
                 {Color::kRed, Shape::kCross, 1, 1},
                 {Color::kYellow, Shape::kSquare, 2, 2}});
  c = CanonicalCaption(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->category, Category::kMixed);
  EXPECT_EQ(FormatCaption(*c), "a red cross and two yellow squares");
  EXPECT_FALSE(Satisfies(s, Parse("a red cross and a yellow square")));
  EXPECT_FALSE(Satisfies(s, Parse("two yellow squares")));
  EXPECT_TRUE(Satisfies(s, Parse("two yellow squares and a red cross")));
  s = MakeScene({{Color::kGreen, Shape::kCross, 0, 0},
                 {Color::kRed, Shape::kCircle, 0, 1},
                 {Color::kBlue, Shape::kSquare, 0, 2}});
  // Red (0) < green (1) < blue (2).
  EXPECT_EQ(FormatCaption(*CanonicalCaption(s)),
            "a red circle and a green cross and a blue square");
  // Canonical order is by (color, shape): the pair comes first when it sorts first.
  s = MakeScene({{Color::kRed, Shape::kCircle, 0, 0},
                 {Color::kRed, Shape::kCircle, 2, 1},
                 {Color::kRed, Shape::kSquare, 1, 1}});
  EXPECT_EQ(FormatCaption(*CanonicalCaption(s)), "two red circles and a red square");
}

TEST(CaptionTest, SatisfiesMixed) {
  const Object red_circle{Color::kRed, Shape::kCircle, 0, 0};
  const Object red_circle2{Color::kRed, Shape::kCircle, 2, 2};
  const Object blue_square{Color::kBlue, Shape::kSquare, 1, 1};
  const Object green_cross{Color::kGreen, Shape::kCross, 0, 2};
  const Caption pair_plus = Parse("two red circles and a blue square");
  EXPECT_TRUE(Satisfies(MakeScene({blue_square, red_circle2, red_circle}), pair_plus));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square}), pair_plus));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square, green_cross}), pair_plus));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, red_circle2, blue_square, green_cross}),
                         pair_plus));
  const Caption three = Parse("a green cross and a red circle and a blue square");
  EXPECT_TRUE(Satisfies(MakeScene({red_circle, blue_square, green_cross}), three));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square, red_circle2}), three));
  EXPECT_FALSE(Satisfies(MakeScene({red_circle, blue_square}), three));
}

// Every scene of 1 to 3 objects in distinct cells has a canonical caption that it
// satisfies, that round-trips through text, and whose category follows the scene.
TEST(CaptionTest, CanonicalCaptionCoversEveryScene) {
  std::mt19937_64 rng(/*seed=*/13);
  std::uniform_int_distribution<int> color(0, kNumColors - 1);
  std::uniform_int_distribution<int> shape(0, kNumShapes - 1);
  std::uniform_int_distribution<int> n_objects(1, 3);
  for (int grid : {2, 3, 4}) {
    std::uniform_int_distribution<int> cell(0, grid * grid - 1);
    std::set<Category> categories;
    for (int i = 0; i < 20000; ++i) {
      const int n = n_objects(rng);
      // Few colors and shapes on some draws so that pairs and triples of equal kinds
      // are common.
      const bool narrow = i % 2 == 0;
      std::set<int> cells;
      Scene s;
      while (static_cast<int>(s.objects.size()) < n) {
        const int k = cell(rng);
        if (!cells.insert(k).second) continue;
        const Color c = kAllColors[narrow ? color(rng) % 2 : color(rng)];
        const Shape sh = kAllShapes[narrow ? shape(rng) % 2 : shape(rng)];
        s.objects.push_back({c, sh, k / grid, k % grid});
      }
      absl::StatusOr<Caption> c = CanonicalCaption(s);
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_TRUE(Satisfies(s, *c)) << FormatCaption(*c);
      EXPECT_EQ(c->NumObjects(), n);
      EXPECT_EQ(ParseCaption(FormatCaption(*c)).value_or(Caption{}), *c)
          << FormatCaption(*c);
      // Satisfies never accepts a scene with one object fewer or more.
      Scene fewer = s;
      fewer.objects.pop_back();
      EXPECT_FALSE(Satisfies(fewer, *c)) << FormatCaption(*c);
      categories.insert(c->category);
      if (n == 3) {
        const bool all_equal =
            std::all_of(s.objects.begin(), s.objects.end(), [&](const Object& o) {
              return o.color == s.objects[0].color && o.shape == s.objects[0].shape;
            });
        EXPECT_EQ(c->category, all_equal ? Category::kCounting : Category::kMixed);
      }
    }
    EXPECT_EQ(categories.size(), 5u) << grid;
  }
}

TEST(CaptionTest, CanonicalCaptionRejectsOtherScenes) {
  const Object a{Color::kRed, Shape::kCircle, 0, 0};
  const Object b{Color::kRed, Shape::kCircle, 0, 1};
  const Object c{Color::kBlue, Shape::kCircle, 0, 2};
  const Object d{Color::kRed, Shape::kCircle, 1, 1};
  for (const Scene& s :
       {MakeScene({}), MakeScene({a, b, d, c}),
        MakeScene({a, b, d, {Color::kRed, Shape::kCircle, 2, 2}}), MakeScene({a, a})}) {
    EXPECT_EQ(CanonicalCaption(s).status().code(), absl::StatusCode::kInvalidArgument)
        << s.objects.size();
  }
}

TEST(CaptionTest, SampledScenesHaveTheirCategory) {
  std::mt19937_64 rng(/*seed=*/7);
  for (Category category : CategoriesWithMixed()) {
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
  int mixed_pairs = 0;
  for (Category category : CategoriesWithMixed()) {
    for (int i = 0; i < 2000; ++i) {
      const Caption c = SampleCaption(category, rng);
      EXPECT_EQ(c.category, category);
      const std::string text = FormatCaption(c);
      absl::StatusOr<Caption> parsed = ParseCaption(text);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(*parsed, c);
      if (category == Category::kPosition) relations.insert(c.relation);
      if (category == Category::kTwoObjects) two_object_prompts.insert(text);
      if (category == Category::kMixed) mixed_pairs += c.phrases.size() == 2;
      const Scene scene = SampleSceneFor(c, rng);
      ASSERT_TRUE(ValidateScene(scene, /*grid=*/3).ok());
      EXPECT_TRUE(Satisfies(scene, c)) << text;
    }
  }
  EXPECT_EQ(relations.size(), 4u);
  // Both orders of A and B occur: far more than the 276 unordered pairs.
  EXPECT_GT(two_object_prompts.size(), 400u);
  // About half of the mixed prompts are a pair plus another kind.
  EXPECT_GT(mixed_pairs, 800);
  EXPECT_LT(mixed_pairs, 1200);
}

TEST(CaptionTest, CategoryNames) {
  for (Category c : CategoriesWithMixed()) {
    EXPECT_EQ(CategoryFromName(CategoryName(c)).value_or(Category::kSingle), c);
  }
  EXPECT_EQ(kNumCategoryValues, 5);
  EXPECT_EQ(CategoryName(Category::kTwoObjects), "two_objects");
  EXPECT_EQ(CategoryFromName("pairs").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet::world
