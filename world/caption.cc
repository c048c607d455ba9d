#include "world/caption.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "world/internal/strings.h"
#include "world/random.h"

namespace duet::world {
namespace {

using internal::ToAbsl;

std::optional<Color> ColorFromWord(std::string_view w) {
  for (Color c : kAllColors) {
    if (ColorName(c) == w) return c;
  }
  return std::nullopt;
}

std::optional<Shape> ShapeFromWord(std::string_view w, bool plural) {
  for (Shape s : kAllShapes) {
    if ((plural ? ShapePlural(s) : ShapeName(s)) == w) return s;
  }
  return std::nullopt;
}

// A recursive-descent parser over the caption's words; every error names the caption,
// the word and its 1-based position.
class CaptionParser {
 public:
  explicit CaptionParser(std::string_view text) : text_(text) {}

  absl::StatusOr<Caption> Parse() {
    if (text_.empty()) return absl::InvalidArgumentError("empty caption");
    for (absl::string_view w : absl::StrSplit(ToAbsl(text_), ' ')) {
      words_.push_back(internal::ToStd(w));
    }
    for (size_t i = 0; i < words_.size(); ++i) {
      if (words_[i].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("caption \"", ToAbsl(text_), "\": empty word at position ",
                         i + 1, " (words are separated by single spaces)"));
      }
    }
    absl::StatusOr<std::string_view> first = Next("\"a\", \"two\" or \"three\"");
    if (!first.ok()) return first.status();
    if (*first == "three") {
      Caption c;
      c.category = Category::kCounting;
      c.count = 3;
      absl::StatusOr<Description> d = ParseDescription(/*plural=*/true);
      if (!d.ok()) return d.status();
      c.a = *d;
      if (absl::Status s = ExpectEnd(); !s.ok()) return s;  // no "three" in a list
      return c;
    }
    if (*first != "a" && *first != "two") {
      return Unexpected(pos_ - 1, "\"a\", \"two\" or \"three\"");
    }
    std::vector<Phrase> phrases;
    {
      const int count = *first == "two" ? 2 : 1;
      absl::StatusOr<Description> d = ParseDescription(/*plural=*/count == 2);
      if (!d.ok()) return d.status();
      phrases.push_back({*d, count});
    }
    if (phrases[0].count == 1 && pos_ < words_.size() && words_[pos_] != "and") {
      return ParsePosition(phrases[0].description);
    }
    // A list of phrases joined by "and".
    int objects = phrases[0].count;
    while (pos_ < words_.size()) {
      if (objects >= 3) return Unexpected(pos_, "the end of the caption (3 objects)");
      if (absl::Status s = Expect("and"); !s.ok()) return s;
      absl::StatusOr<std::string_view> article =
          Next(objects == 2 ? "\"a\"" : "\"a\" or \"two\"");
      if (!article.ok()) return article.status();
      const bool two = *article == "two";
      if ((*article != "a" && !two) || (two && objects == 2)) {
        return Unexpected(pos_ - 1, objects == 2 ? "\"a\" (a caption describes at most 3 "
                                                   "objects; \"three\" never starts a "
                                                   "later phrase)"
                                                 : "\"a\" or \"two\"");
      }
      absl::StatusOr<Description> d = ParseDescription(/*plural=*/two);
      if (!d.ok()) return d.status();
      for (const Phrase& p : phrases) {
        if (p.description == *d) {
          return absl::InvalidArgumentError(absl::StrCat(
              "caption \"", ToAbsl(text_), "\": the ", DescriptionText(*d),
              " is described twice; the objects of a caption must differ in color or "
              "shape"));
        }
      }
      phrases.push_back({*d, two ? 2 : 1});
      objects += phrases.back().count;
    }
    Caption c;
    if (phrases.size() == 1) {
      c.category = phrases[0].count == 1 ? Category::kSingle : Category::kCounting;
      c.count = phrases[0].count;
      c.a = phrases[0].description;
    } else if (phrases.size() == 2 && objects == 2) {
      c.category = Category::kTwoObjects;
      c.a = phrases[0].description;
      c.b = phrases[1].description;
    } else {
      c.category = Category::kMixed;
      c.phrases = std::move(phrases);
    }
    return c;
  }

 private:
  // "<relation> a <color> <shape>" after "a <a>", up to the end.
  absl::StatusOr<Caption> ParsePosition(const Description& a) {
    Caption c;
    c.category = Category::kPosition;
    c.a = a;
    constexpr std::string_view kLink =
        "\"and\", \"left\", \"right\", \"above\" or \"below\"";
    absl::StatusOr<std::string_view> link = Next(kLink);
    if (!link.ok()) return link.status();
    if (*link == "left" || *link == "right") {
      c.relation = *link == "left" ? Relation::kLeftOf : Relation::kRightOf;
      if (absl::Status s = Expect("of"); !s.ok()) return s;
    } else if (*link == "above") {
      c.relation = Relation::kAbove;
    } else if (*link == "below") {
      c.relation = Relation::kBelow;
    } else {
      return Unexpected(pos_ - 1, kLink);
    }
    if (absl::Status s = Expect("a"); !s.ok()) return s;
    absl::StatusOr<Description> b = ParseDescription(/*plural=*/false);
    if (!b.ok()) return b.status();
    c.b = *b;
    if (absl::Status s = ExpectEnd(); !s.ok()) return s;
    if (c.a == c.b) {
      return absl::InvalidArgumentError(absl::StrCat(
          "caption \"", ToAbsl(text_), "\": both objects are a ", DescriptionText(c.a),
          "; the two objects of a caption must differ in color or shape"));
    }
    return c;
  }

  absl::Status Unexpected(size_t index, std::string_view expected) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "caption \"", ToAbsl(text_), "\": unexpected word \"", ToAbsl(words_[index]),
        "\" at position ", index + 1, "; expected ", ToAbsl(expected)));
  }

  // The next word, or an error naming what was expected when the caption ended.
  absl::StatusOr<std::string_view> Next(std::string_view expected) {
    if (pos_ >= words_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("caption \"", ToAbsl(text_),
                                                     "\": ends after word ", pos_,
                                                     "; expected ", ToAbsl(expected)));
    }
    return words_[pos_++];
  }

  absl::Status Expect(std::string_view word) {
    const std::string expected = absl::StrCat("\"", ToAbsl(word), "\"");
    absl::StatusOr<std::string_view> w = Next(expected);
    if (!w.ok()) return w.status();
    if (*w != word) return Unexpected(pos_ - 1, expected);
    return absl::OkStatus();
  }

  absl::Status ExpectEnd() const {
    if (pos_ < words_.size()) return Unexpected(pos_, "the end of the caption");
    return absl::OkStatus();
  }

  absl::StatusOr<Description> ParseDescription(bool plural) {
    constexpr std::string_view kColors =
        "a color (red, green, blue, yellow, magenta, cyan)";
    const std::string shapes =
        plural ? "a plural shape (circles, squares, triangles, crosses)"
               : "a shape (circle, square, triangle, cross)";
    absl::StatusOr<std::string_view> cw = Next(kColors);
    if (!cw.ok()) return cw.status();
    std::optional<Color> color = ColorFromWord(*cw);
    if (!color) return Unexpected(pos_ - 1, kColors);
    absl::StatusOr<std::string_view> sw = Next(shapes);
    if (!sw.ok()) return sw.status();
    std::optional<Shape> shape = ShapeFromWord(*sw, plural);
    if (!shape) return Unexpected(pos_ - 1, shapes);
    return Description{*color, *shape};
  }

  std::string_view text_;
  std::vector<std::string_view> words_;
  size_t pos_ = 0;
};

// Returns the index pair (i, j) of the objects of a two-object scene matching (a, b), or
// nullopt if the scene does not hold exactly one object for each description.
std::optional<std::pair<int, int>> MatchPair(const Scene& scene, const Description& a,
                                             const Description& b) {
  if (scene.objects.size() != 2) return std::nullopt;
  const Object& o0 = scene.objects[0];
  const Object& o1 = scene.objects[1];
  if (a.Matches(o0) && b.Matches(o1)) return std::make_pair(0, 1);
  if (a.Matches(o1) && b.Matches(o0)) return std::make_pair(1, 0);
  return std::nullopt;
}

Description RandomDescription(std::mt19937_64& rng) {
  Description d;
  d.color = kAllColors[UniformInt(rng, 0, kNumColors - 1)];
  d.shape = kAllShapes[UniformInt(rng, 0, kNumShapes - 1)];
  return d;
}

// A uniformly random ordered pair of different descriptions.
std::pair<Description, Description> RandomDistinctPair(std::mt19937_64& rng) {
  Description a = RandomDescription(rng);
  Description b;
  do {
    b = RandomDescription(rng);
  } while (b == a);
  return {a, b};
}

// `n` distinct cells, uniformly at random, in random order.
std::vector<std::pair<int, int>> RandomCells(int n, int grid, std::mt19937_64& rng) {
  std::vector<std::pair<int, int>> cells;
  for (int r = 0; r < grid; ++r) {
    for (int c = 0; c < grid; ++c) cells.emplace_back(r, c);
  }
  // Partial Fisher-Yates: the first n entries are a uniform random sample.
  for (int i = 0; i < n; ++i) {
    std::swap(cells[i], cells[UniformInt(rng, i, static_cast<int>(cells.size()) - 1)]);
  }
  cells.resize(n);
  return cells;
}

// Two distinct positions along a line of `grid` cells, in random order.
std::pair<int, int> TwoDistinct(int grid, std::mt19937_64& rng) {
  const int x = UniformInt(rng, 0, grid - 1);
  const int y = (x + UniformInt(rng, 1, grid - 1)) % grid;
  return {x, y};
}

Object MakeObject(const Description& d, int row, int col) {
  return Object{d.color, d.shape, row, col};
}

}  // namespace

std::string_view CategoryName(Category category) {
  switch (category) {
    case Category::kSingle:
      return "single";
    case Category::kCounting:
      return "counting";
    case Category::kTwoObjects:
      return "two_objects";
    case Category::kPosition:
      return "position";
    case Category::kMixed:
      return "mixed";
  }
  return "?";
}

absl::StatusOr<Category> CategoryFromName(std::string_view name) {
  for (Category c : kAllCategories) {
    if (CategoryName(c) == name) return c;
  }
  for (Category c : kTrainingOnlyCategories) {
    if (CategoryName(c) == name) return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown category \"", ToAbsl(name),
                   "\" (expected single, counting, two_objects, position or mixed)"));
}

int Caption::NumObjects() const {
  switch (category) {
    case Category::kSingle:
    case Category::kCounting:
      return count;
    case Category::kTwoObjects:
    case Category::kPosition:
      return 2;
    case Category::kMixed: {
      int n = 0;
      for (const Phrase& p : phrases) n += p.count;
      return n;
    }
  }
  return 0;
}

std::string_view RelationName(Relation relation) {
  switch (relation) {
    case Relation::kLeftOf:
      return "left of";
    case Relation::kRightOf:
      return "right of";
    case Relation::kAbove:
      return "above";
    case Relation::kBelow:
      return "below";
  }
  return "?";
}

bool RelationHolds(const Object& a, const Object& b, Relation relation) {
  switch (relation) {
    case Relation::kLeftOf:
      return a.row == b.row && a.col < b.col;
    case Relation::kRightOf:
      return a.row == b.row && a.col > b.col;
    case Relation::kAbove:
      return a.col == b.col && a.row < b.row;
    case Relation::kBelow:
      return a.col == b.col && a.row > b.row;
  }
  return false;
}

std::string DescriptionText(const Description& d) {
  return absl::StrCat(ToAbsl(ColorName(d.color)), " ", ToAbsl(ShapeName(d.shape)));
}

absl::StatusOr<Caption> ParseCaption(std::string_view text) {
  return CaptionParser(text).Parse();
}

std::string FormatCaption(const Caption& c) {
  auto plural = [](const Description& d) {
    return absl::StrCat(ToAbsl(ColorName(d.color)), " ", ToAbsl(ShapePlural(d.shape)));
  };
  switch (c.category) {
    case Category::kSingle:
      return absl::StrCat("a ", DescriptionText(c.a));
    case Category::kCounting:
      return absl::StrCat(c.count == 3 ? "three " : "two ", plural(c.a));
    case Category::kTwoObjects:
      return absl::StrCat("a ", DescriptionText(c.a), " and a ", DescriptionText(c.b));
    case Category::kPosition:
      return absl::StrCat("a ", DescriptionText(c.a), " ",
                          ToAbsl(RelationName(c.relation)), " a ", DescriptionText(c.b));
    case Category::kMixed:
      return absl::StrJoin(c.phrases, " and ", [&](std::string* out, const Phrase& p) {
        absl::StrAppend(out, p.count == 2 ? absl::StrCat("two ", plural(p.description))
                                          : absl::StrCat("a ", DescriptionText(p.description)));
      });
  }
  return "";
}

bool Satisfies(const Scene& scene, const Caption& caption) {
  const std::vector<Object>& objects = scene.objects;
  switch (caption.category) {
    case Category::kSingle:
      return objects.size() == 1 && caption.a.Matches(objects[0]);
    case Category::kCounting:
      return static_cast<int>(objects.size()) == caption.count &&
             std::all_of(objects.begin(), objects.end(),
                         [&](const Object& o) { return caption.a.Matches(o); });
    case Category::kTwoObjects:
      return MatchPair(scene, caption.a, caption.b).has_value();
    case Category::kPosition: {
      std::optional<std::pair<int, int>> m = MatchPair(scene, caption.a, caption.b);
      return m.has_value() &&
             RelationHolds(objects[m->first], objects[m->second], caption.relation);
    }
    case Category::kMixed: {
      if (static_cast<int>(objects.size()) != caption.NumObjects()) return false;
      // The phrases' descriptions are distinct, so matching counts per phrase and the
      // total leaves no object unaccounted for.
      return std::all_of(
          caption.phrases.begin(), caption.phrases.end(), [&](const Phrase& p) {
            return std::count_if(objects.begin(), objects.end(), [&](const Object& o) {
                     return p.description.Matches(o);
                   }) == p.count;
          });
    }
  }
  return false;
}

absl::StatusOr<Caption> CanonicalCaption(const Scene& scene) {
  const std::vector<Object>& objects = scene.objects;
  for (size_t i = 0; i < objects.size(); ++i) {
    for (size_t j = i + 1; j < objects.size(); ++j) {
      if (objects[i].row == objects[j].row && objects[i].col == objects[j].col) {
        return absl::InvalidArgumentError(absl::StrCat(
            "two objects share cell (", objects[i].row, ",", objects[i].col, ")"));
      }
    }
  }
  Caption c;
  if (objects.size() == 1) {
    c.category = Category::kSingle;
    c.a = {objects[0].color, objects[0].shape};
    return c;
  }
  if (objects.size() == 2 || objects.size() == 3) {
    const Description first{objects[0].color, objects[0].shape};
    if (std::all_of(objects.begin(), objects.end(),
                    [&](const Object& o) { return first.Matches(o); })) {
      c.category = Category::kCounting;
      c.count = static_cast<int>(objects.size());
      c.a = first;
      return c;
    }
  }
  if (objects.size() == 3) {
    // Not all equal: one phrase per distinct description, in (color, shape) order.
    c.category = Category::kMixed;
    for (const Object& o : objects) {
      const Description d{o.color, o.shape};
      auto it = std::find_if(c.phrases.begin(), c.phrases.end(),
                             [&](const Phrase& p) { return p.description == d; });
      if (it == c.phrases.end()) {
        c.phrases.push_back({d, 1});
      } else {
        ++it->count;
      }
    }
    std::sort(c.phrases.begin(), c.phrases.end(), [](const Phrase& x, const Phrase& y) {
      return std::make_pair(x.description.color, x.description.shape) <
             std::make_pair(y.description.color, y.description.shape);
    });
    return c;
  }
  if (objects.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a scene of ", objects.size(),
                     " objects has no caption (captions describe 1 to 3 objects)"));
  }
  const Object* oa = &objects[0];
  const Object* ob = &objects[1];
  auto key = [](const Object* o) { return std::make_pair(o->color, o->shape); };
  if (key(ob) < key(oa)) std::swap(oa, ob);
  c.a = {oa->color, oa->shape};
  c.b = {ob->color, ob->shape};
  if (oa->row == ob->row) {
    c.category = Category::kPosition;
    c.relation = oa->col < ob->col ? Relation::kLeftOf : Relation::kRightOf;
  } else if (oa->col == ob->col) {
    c.category = Category::kPosition;
    c.relation = oa->row < ob->row ? Relation::kAbove : Relation::kBelow;
  } else {
    c.category = Category::kTwoObjects;
  }
  return c;
}

Scene SampleScene(Category category, std::mt19937_64& rng, const WorldConfig& config) {
  const int grid = config.grid;
  Scene scene;
  switch (category) {
    case Category::kSingle: {
      const Description d = RandomDescription(rng);
      scene.objects.push_back(
          MakeObject(d, UniformInt(rng, 0, grid - 1), UniformInt(rng, 0, grid - 1)));
      break;
    }
    case Category::kCounting: {
      const Description d = RandomDescription(rng);
      const int count = grid >= 3 ? UniformInt(rng, 2, 3) : 2;
      for (const auto& [r, c] : RandomCells(count, grid, rng)) {
        scene.objects.push_back(MakeObject(d, r, c));
      }
      break;
    }
    case Category::kTwoObjects: {
      const auto [a, b] = RandomDistinctPair(rng);
      const auto [ra, rb] = TwoDistinct(grid, rng);
      const auto [ca, cb] = TwoDistinct(grid, rng);
      scene.objects.push_back(MakeObject(a, ra, ca));
      scene.objects.push_back(MakeObject(b, rb, cb));
      break;
    }
    case Category::kPosition: {
      const auto [a, b] = RandomDistinctPair(rng);
      const bool same_row = UniformInt(rng, 0, 1) == 0;
      const int line = UniformInt(rng, 0, grid - 1);
      const auto [pa, pb] = TwoDistinct(grid, rng);
      if (same_row) {
        scene.objects.push_back(MakeObject(a, line, pa));
        scene.objects.push_back(MakeObject(b, line, pb));
      } else {
        scene.objects.push_back(MakeObject(a, pa, line));
        scene.objects.push_back(MakeObject(b, pb, line));
      }
      break;
    }
    case Category::kMixed:
      return SampleSceneFor(SampleCaption(Category::kMixed, rng), rng, config);
  }
  return scene;
}

Caption SampleCaption(Category category, std::mt19937_64& rng) {
  Caption c;
  c.category = category;
  switch (category) {
    case Category::kSingle:
      c.a = RandomDescription(rng);
      break;
    case Category::kCounting:
      c.count = UniformInt(rng, 2, 3);
      c.a = RandomDescription(rng);
      break;
    case Category::kTwoObjects:
      std::tie(c.a, c.b) = RandomDistinctPair(rng);
      break;
    case Category::kPosition:
      std::tie(c.a, c.b) = RandomDistinctPair(rng);
      c.relation = kAllRelations[UniformInt(rng, 0, 3)];
      break;
    case Category::kMixed:
      if (UniformInt(rng, 0, 1) == 0) {
        // A pair plus another kind, in either order.
        const auto [pair, other] = RandomDistinctPair(rng);
        c.phrases = {{pair, 2}, {other, 1}};
        if (UniformInt(rng, 0, 1) == 0) std::swap(c.phrases[0], c.phrases[1]);
      } else {
        // Three distinct kinds, in any order.
        const auto [x, y] = RandomDistinctPair(rng);
        Description z;
        do {
          z = RandomDescription(rng);
        } while (z == x || z == y);
        c.phrases = {{x, 1}, {y, 1}, {z, 1}};
      }
      break;
  }
  return c;
}

Scene SampleSceneFor(const Caption& caption, std::mt19937_64& rng,
                     const WorldConfig& config) {
  const int grid = config.grid;
  Scene scene;
  switch (caption.category) {
    case Category::kSingle:
    case Category::kCounting:
      for (const auto& [r, c] : RandomCells(caption.count, grid, rng)) {
        scene.objects.push_back(MakeObject(caption.a, r, c));
      }
      break;
    case Category::kTwoObjects: {
      const auto cells = RandomCells(2, grid, rng);
      scene.objects.push_back(MakeObject(caption.a, cells[0].first, cells[0].second));
      scene.objects.push_back(MakeObject(caption.b, cells[1].first, cells[1].second));
      break;
    }
    case Category::kPosition: {
      const int line = UniformInt(rng, 0, grid - 1);
      auto [lo, hi] = TwoDistinct(grid, rng);
      if (lo > hi) std::swap(lo, hi);
      // A takes the smaller index along the line for "left of" and "above".
      const bool a_first =
          caption.relation == Relation::kLeftOf || caption.relation == Relation::kAbove;
      const int pa = a_first ? lo : hi;
      const int pb = a_first ? hi : lo;
      if (caption.relation == Relation::kLeftOf ||
          caption.relation == Relation::kRightOf) {
        scene.objects.push_back(MakeObject(caption.a, line, pa));
        scene.objects.push_back(MakeObject(caption.b, line, pb));
      } else {
        scene.objects.push_back(MakeObject(caption.a, pa, line));
        scene.objects.push_back(MakeObject(caption.b, pb, line));
      }
      break;
    }
    case Category::kMixed: {
      const auto cells = RandomCells(caption.NumObjects(), grid, rng);
      size_t next = 0;
      for (const Phrase& p : caption.phrases) {
        for (int k = 0; k < p.count; ++k, ++next) {
          scene.objects.push_back(
              MakeObject(p.description, cells[next].first, cells[next].second));
        }
      }
      break;
    }
  }
  return scene;
}

}  // namespace duet::world
