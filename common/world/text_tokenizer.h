#ifndef DUET_COMMON_WORLD_TEXT_TOKENIZER_H_
#define DUET_COMMON_WORLD_TEXT_TOKENIZER_H_

// Word-level tokenizer of the caption vocabulary. Each of the 23 words gets one id in the
// text range of the TokenLayout, in this order starting at layout.text_begin:
//   a two three red green blue yellow magenta cyan circle circles square squares
//   triangle triangles cross crosses and left right of above below
//
// Thread-safety: immutable after construction; safe to share between threads.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/token_layout.h"

namespace duet::world {

class TextTokenizer {
 public:
  // REQUIRES: layout's text range holds at least kNumWords ids.
  explicit TextTokenizer(const TokenLayout& layout = TokenLayout());

  static constexpr int kNumWords = 23;

  // The ids of the words of `text`, split at spaces (runs of spaces and leading or
  // trailing spaces are ignored; an empty text gives no ids). InvalidArgument naming the
  // first word that is not in the vocabulary. Does not check the grammar.
  absl::StatusOr<std::vector<int64_t>> Encode(std::string_view text) const;

  // The words of `ids` joined by single spaces. OutOfRange naming the first id that is
  // not a word (outside [text_begin, text_begin + kNumWords), e.g. an image code or a
  // special token: strip those before decoding).
  absl::StatusOr<std::string> Decode(const std::vector<int64_t>& ids) const;

  // The id of `word`, or -1 if it is not in the vocabulary.
  int64_t WordId(std::string_view word) const;

  // All words, in id order.
  static const std::vector<std::string_view>& Words();

 private:
  int64_t text_begin_;
};

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_TEXT_TOKENIZER_H_
