#ifndef DUET_COMMON_WORLD_BUNDLE_H_
#define DUET_COMMON_WORLD_BUNDLE_H_

// A model folder as every role loads it: the transformer plus the two tokenizers that
// map the Shapes world onto its vocabulary.
//
//   <dir>/config.json            Hugging Face LLaMA config
//   <dir>/model.safetensors      weights (Hugging Face LLaMA names)
//   <dir>/codebook.safetensors   the VQ image tokenizer
//   <dir>/duet.json              token layout and world geometry
//
// Thread-safety: const methods may be called concurrently.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"
#include "common/world/image.h"
#include "common/world/image_tokenizer.h"
#include "common/world/scene.h"
#include "common/world/text_tokenizer.h"

namespace duet::world {

// The unified vocabulary for a codebook of `codebook_size` codes.
TokenLayout LayoutForCodebook(int64_t codebook_size, const WorldConfig& world);

// Longest sequence either template needs, which is the models' max_position_embeddings.
int64_t MaxSequenceLength(const TokenLayout& layout);

struct ModelBundle {
  Transformer model;
  TokenLayout layout;
  WorldConfig world;
  TextTokenizer text;
  ImageTokenizer image;

  // Caption text -> text token ids (InvalidArgument for an unknown word or an over-long
  // caption).
  absl::StatusOr<std::vector<int64_t>> EncodeCaption(std::string_view caption) const;
  // Text token ids (an optional trailing <eos> is ignored) -> caption text.
  absl::StatusOr<std::string> DecodeCaption(const std::vector<int64_t>& ids) const;
  // Image -> layout.image_tokens image token ids (InvalidArgument for a wrong size).
  absl::StatusOr<std::vector<int64_t>> EncodeImage(const Image& image) const;
  // Image token ids -> pixels (InvalidArgument / OutOfRange for bad ids).
  absl::StatusOr<Image> DecodeImage(const std::vector<int64_t>& ids) const;
};

absl::StatusOr<ModelBundle> LoadBundle(const std::string& dir);
// Writes every file of the folder (each atomically).
absl::Status SaveBundle(const std::string& dir, const ModelBundle& bundle);

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_BUNDLE_H_
