#ifndef DUET_COMMON_WORLD_CAPTION_H_
#define DUET_COMMON_WORLD_CAPTION_H_

// Captions of the Shapes world: a tiny grammar, its exact semantics over scenes, the one
// canonical caption of a scene, and the samplers that make scenes and prompts.
//
// Grammar (lowercase words separated by single spaces; no other characters):
//   single       "a <color> <shape>"                      "a red circle"
//   counting     "<two|three> <color> <shapes>"           "two blue squares"
//   two_objects  "a <color> <shape> and a <color> <shape>"
//   position     "a <color> <shape> <relation> a <color> <shape>",
//                <relation> = "left of" | "right of" | "above" | "below"
//   mixed        a list of 2 or 3 phrases joined by " and ", each phrase
//                "a <color> <shape>" or "two <color> <shapes>", describing 3 objects in
//                all, that no category above covers: a pair plus another kind
//                "two yellow squares and a red cross", "a red cross and two yellow
//                squares" or three kinds "a red circle and a blue square and a green
//                cross".
//                ("three" never appears in a list; 4 or more objects are no caption.)
// In two_objects, position and mixed captions the descriptions must differ in color or
// in shape ("a red circle and a red circle" is not a caption).
//
// Counts of distinct caption strings: single 24, counting 48, two_objects 552 (ordered
// pairs), position 2208, mixed 13248 (1104 of a pair plus another kind, 12144 ordered
// triples). The longest caption has 11 words ("a red circle and a blue square and a
// green cross").
//
// The four categories of kAllCategories are the evaluated (GenEval-like) ones; mixed is a
// training-only category (kTrainingOnlyCategories): it exists so that every scene of 1 to
// 3 objects has a caption and the understanding direction learns to describe scenes with
// one object too many, but held-out evaluation sets and reports use the four only.
//
// Thread-safety: plain values and pure functions; the samplers use only the generator
// they are given.

#include <array>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/world/scene.h"

namespace duet::world {

enum class Category { kSingle, kCounting, kTwoObjects, kPosition, kMixed };
// The evaluated categories (every eval set and report is over these four).
inline constexpr int kNumCategories = 4;
inline constexpr std::array<Category, kNumCategories> kAllCategories = {
    Category::kSingle, Category::kCounting, Category::kTwoObjects, Category::kPosition};
// Categories that appear in training data only, never in evaluation.
inline constexpr std::array<Category, 1> kTrainingOnlyCategories = {Category::kMixed};
// Number of Category values (kAllCategories and kTrainingOnlyCategories together);
// static_cast<int>(category) < kNumCategoryValues for every category.
inline constexpr int kNumCategoryValues =
    kNumCategories + static_cast<int>(kTrainingOnlyCategories.size());

// "single", "counting", "two_objects", "position", "mixed".
std::string_view CategoryName(Category category);
// Inverse of CategoryName; InvalidArgument for any other string.
absl::StatusOr<Category> CategoryFromName(std::string_view name);

enum class Relation { kLeftOf, kRightOf, kAbove, kBelow };
inline constexpr std::array<Relation, 4> kAllRelations = {
    Relation::kLeftOf, Relation::kRightOf, Relation::kAbove, Relation::kBelow};

// "left of", "right of", "above", "below".
std::string_view RelationName(Relation relation);

// A color and a shape: what a caption says about one object (or a group of equal ones).
struct Description {
  Color color = Color::kRed;
  Shape shape = Shape::kCircle;
  bool Matches(const Object& o) const { return o.color == color && o.shape == shape; }
  friend bool operator==(const Description& x, const Description& y) {
    return x.color == y.color && x.shape == y.shape;
  }
  friend bool operator!=(const Description& x, const Description& y) { return !(x == y); }
};

// True if object `a` stands in `relation` to object `b` (see Satisfies).
bool RelationHolds(const Object& a, const Object& b, Relation relation);

// "red circle" (singular).
std::string DescriptionText(const Description& d);

// One noun phrase of a mixed caption: "a red circle" (count 1) or "two red circles"
// (count 2).
struct Phrase {
  Description description;
  int count = 1;  // 1 or 2
  friend bool operator==(const Phrase& x, const Phrase& y) {
    return x.description == y.description && x.count == y.count;
  }
  friend bool operator!=(const Phrase& x, const Phrase& y) { return !(x == y); }
};

// A parsed caption. Fields that a category does not use keep their defaults, so two
// captions are equal iff they format to the same string.
struct Caption {
  Category category = Category::kSingle;
  Description a;                          // the (first) object; in counting, every object
  int count = 1;                          // 1, except counting: 2 or 3
  Description b;                          // two_objects and position: the second object
  Relation relation = Relation::kLeftOf;  // position only: how `a` relates to `b`
  // mixed only (empty otherwise; `a`, `count`, `b` keep their defaults in mixed): the
  // phrases in caption order, 2 or 3 of them, with distinct descriptions and counts
  // summing to 3.
  std::vector<Phrase> phrases;

  // The number of objects the caption describes (1, 2 or 3).
  int NumObjects() const;

  friend bool operator==(const Caption& x, const Caption& y) {
    return x.category == y.category && x.a == y.a && x.count == y.count && x.b == y.b &&
           x.relation == y.relation && x.phrases == y.phrases;
  }
  friend bool operator!=(const Caption& x, const Caption& y) { return !(x == y); }
};

// Parses `text` against the grammar above. InvalidArgument naming the offending word and
// its 1-based position (or the missing word at the end) for anything else, including
// extra spaces, capitals, unknown words, a wrong number form ("a red circles",
// "two red circle"), two equal descriptions ("a red circle and two red circles"), more
// than 3 objects ("two red circles and two blue squares") and "three" in a list.
absl::StatusOr<Caption> ParseCaption(std::string_view text);

// The caption's text. REQUIRES: `caption` is valid (as produced by ParseCaption, the
// samplers or CanonicalCaption); then ParseCaption(FormatCaption(c)) == c.
std::string FormatCaption(const Caption& caption);

// The captions that relate the same two objects otherwise: for a position caption, the
// three with the same descriptions `a` and `b` in the same order and each other relation,
// in kAllRelations order ("A left of B", "A right of B", "A above B", "A below B", less
// the caption's own); empty for every other category. (The contrast self-reward,
// common/work/reward_kind.h, asks how much more likely the image is under the caption
// than under these.) REQUIRES: `caption` valid.
std::vector<Caption> RelationVariants(const Caption& caption);

// True if `scene` is exactly what `caption` says:
//   single:      exactly one object, of that color and shape;
//   counting:    exactly `count` objects, all of that color and shape;
//   two_objects: exactly two objects, one matching each description, anywhere;
//   position:    as two_objects, and the object A matching `a` relates to the object B
//                matching `b`: "left of" = same row and col(A) < col(B); "right of" =
//                same row and col(A) > col(B); "above" = same column and
//                row(A) < row(B) (row 0 is the top); "below" = same column and
//                row(A) > row(B);
//   mixed:       exactly as many objects as the phrases' counts sum to, and each phrase's
//                count of objects of its color and shape, anywhere.
bool Satisfies(const Scene& scene, const Caption& caption);

// The one canonical caption of `scene` (the understanding target):
//   1 object                         -> single;
//   2 or 3 objects, all equal        -> counting;
//   2 different objects              -> ordered by (color, shape) enum value as A, B;
//                                       position ("A <relation> B") if they share a row
//                                       or a column, two_objects ("A and B") otherwise;
//   3 objects, not all equal         -> mixed, one phrase per distinct description (count
//                                       2 for a pair), phrases ordered by (color, shape)
//                                       enum value.
// So every scene of 1 to 3 objects in distinct cells has a caption. InvalidArgument for
// any other scene (empty, more than 3 objects, two objects in one cell). Guarantees
// Satisfies(scene, result).
absl::StatusOr<Caption> CanonicalCaption(const Scene& scene);

// A random scene whose canonical caption has category `category`: single = one object;
// counting = 2 or 3 equal objects; two_objects = two different objects in different rows
// and columns; position = two different objects sharing a row or a column; mixed = three
// objects, not all equal (a pair plus another kind, or three kinds, equally likely).
// Colors, shapes, counts and cells are uniform among the allowed ones.
// REQUIRES: config.grid >= 2 (and >= 3 for three-object counting scenes, which are
// skipped on smaller grids).
Scene SampleScene(Category category, std::mt19937_64& rng,
                  const WorldConfig& config = WorldConfig());

// A random generation prompt of `category`, uniform over the category's caption strings
// (any order of the two descriptions, any of the four relations). Mixed prompts are a
// pair plus another kind or three kinds with equal probability (uniform over the strings
// of each form, any phrase order): uniform over all strings would make pairs rare.
Caption SampleCaption(Category category, std::mt19937_64& rng);

// A random scene that satisfies `caption`, uniform over the placements that do.
// REQUIRES: `caption` valid; config.grid large enough to hold it (grid >= 2, or >= 3 for
// three objects).
Scene SampleSceneFor(const Caption& caption, std::mt19937_64& rng,
                     const WorldConfig& config = WorldConfig());

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_CAPTION_H_
