#include "common/world/text_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/strings.h"

namespace duet::world {

const std::vector<std::string_view>& TextTokenizer::Words() {
  static const auto* const kWords = new std::vector<std::string_view>{
      "a",       "two",      "three",     "red",    "green",   "blue",
      "yellow",  "magenta",  "cyan",      "circle", "circles", "square",
      "squares", "triangle", "triangles", "cross",  "crosses", "and",
      "left",    "right",    "of",        "above",  "below"};
  return *kWords;
}

TextTokenizer::TextTokenizer(const TokenLayout& layout)
    : text_begin_(layout.text_begin) {}

int64_t TextTokenizer::WordId(std::string_view word) const {
  const std::vector<std::string_view>& words = Words();
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i] == word) return text_begin_ + static_cast<int64_t>(i);
  }
  return -1;
}

absl::StatusOr<std::vector<int64_t>> TextTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> ids;
  int position = 0;
  for (absl::string_view word : absl::StrSplit(ToAbsl(text), ' ', absl::SkipEmpty())) {
    ++position;
    const int64_t id = WordId(ToStd(word));
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat("word ", position, " \"", word,
                                                     "\" of \"", ToAbsl(text),
                                                     "\" is not in the vocabulary"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<std::string> TextTokenizer::Decode(const std::vector<int64_t>& ids) const {
  const std::vector<std::string_view>& words = Words();
  std::vector<absl::string_view> out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t index = ids[i] - text_begin_;
    if (index < 0 || index >= static_cast<int64_t>(words.size())) {
      return absl::OutOfRangeError(absl::StrCat(
          "token ", i, " has id ", ids[i], ", which is not a word (words are ids [",
          text_begin_, ", ", text_begin_ + static_cast<int64_t>(words.size()), "))"));
    }
    out.push_back(ToAbsl(words[index]));
  }
  return absl::StrJoin(out, " ");
}

}  // namespace duet::world
