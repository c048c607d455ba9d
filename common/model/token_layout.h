#ifndef DUET_COMMON_MODEL_TOKEN_LAYOUT_H_
#define DUET_COMMON_MODEL_TOKEN_LAYOUT_H_

// Where each kind of token lives in a unified vocabulary. The model and the decoders know
// only this layout; which words and image codes fill the ranges is the world's business.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace duet {

struct TokenLayout {
  int64_t pad = 0;
  int64_t bos = 1;
  int64_t eos = 2;
  int64_t boi = 3;         // begin of image
  int64_t eoi = 4;         // end of image
  int64_t describe = 5;    // task marker: image -> text ("describe this image")
  int64_t draw = 6;        // task marker: text -> image ("draw this caption")
  int64_t text_begin = 8;  // text tokens are [text_begin, text_end)
  int64_t text_end = 32;
  int64_t image_begin = 32;  // image codes are [image_begin, image_end)
  int64_t image_end = 32 + 512;
  int64_t image_tokens = 36;  // codes per image
  int64_t max_caption_tokens = 12;

  int64_t vocab_size() const { return image_end; }
  friend bool operator==(const TokenLayout& a, const TokenLayout& b) {
    return a.pad == b.pad && a.bos == b.bos && a.eos == b.eos && a.boi == b.boi &&
           a.eoi == b.eoi && a.describe == b.describe && a.draw == b.draw &&
           a.text_begin == b.text_begin && a.text_end == b.text_end &&
           a.image_begin == b.image_begin && a.image_end == b.image_end &&
           a.image_tokens == b.image_tokens &&
           a.max_caption_tokens == b.max_caption_tokens;
  }
  bool IsText(int64_t id) const { return id >= text_begin && id < text_end; }
  bool IsImage(int64_t id) const { return id >= image_begin && id < image_end; }
};

// Reads the layout from a model folder's duet.json (written by world::SaveBundle).
// InvalidArgument naming a missing or inconsistent field.
absl::StatusOr<TokenLayout> ReadTokenLayout(const std::string& model_dir);

}  // namespace duet

#endif  // DUET_COMMON_MODEL_TOKEN_LAYOUT_H_
