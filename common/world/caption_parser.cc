#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/strings.h"
#include "common/world/caption.h"

// The caption grammar's parser (ParseCaption).

namespace duet::world {
namespace {

using ::duet::ToAbsl;

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
      words_.push_back(ToStd(w));
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
}  // namespace

absl::StatusOr<Caption> ParseCaption(std::string_view text) {
  return CaptionParser(text).Parse();
}

}  // namespace duet::world
