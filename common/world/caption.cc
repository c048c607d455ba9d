#include "common/world/caption.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/strings.h"
#include "common/world/random.h"

namespace duet::world {
namespace {

using ::duet::ToAbsl;

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

std::vector<Caption> RelationVariants(const Caption& caption) {
  std::vector<Caption> out;
  if (caption.category != Category::kPosition) return out;
  for (Relation r : kAllRelations) {
    if (r == caption.relation) continue;
    Caption v = caption;
    v.relation = r;
    out.push_back(v);
  }
  return out;
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
        absl::StrAppend(out, p.count == 2
                                 ? absl::StrCat("two ", plural(p.description))
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

}  // namespace duet::world
