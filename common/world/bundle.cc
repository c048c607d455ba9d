#include "common/world/bundle.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/model/generation.h"

namespace duet::world {

TokenLayout LayoutForCodebook(int64_t codebook_size, const WorldConfig& world) {
  TokenLayout layout;
  layout.image_end = layout.image_begin + codebook_size;
  layout.image_tokens = world.num_patches();
  return layout;
}

int64_t MaxSequenceLength(const TokenLayout& layout) {
  // <bos> <task> caption (<= max) <boi> image <eoi> <eos>, rounded up to a multiple of 8.
  const int64_t n = 2 + layout.max_caption_tokens + 1 + layout.image_tokens + 2;
  return (n + 7) / 8 * 8;
}

absl::StatusOr<std::vector<int64_t>> ModelBundle::EncodeCaption(
    std::string_view caption) const {
  DUET_ASSIGN_OR_RETURN(std::vector<int64_t> ids, text.Encode(caption));
  DUET_RETURN_IF_ERROR(ValidateCaptionTokens(layout, ids, 0));
  return ids;
}

absl::StatusOr<std::string> ModelBundle::DecodeCaption(
    const std::vector<int64_t>& ids) const {
  return text.Decode(StripEos(layout, ids));
}

absl::StatusOr<std::vector<int64_t>> ModelBundle::EncodeImage(const Image& im) const {
  DUET_ASSIGN_OR_RETURN(std::vector<int> codes, image.Encode(im));
  std::vector<int64_t> ids(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) ids[i] = layout.image_begin + codes[i];
  return ids;
}

absl::StatusOr<Image> ModelBundle::DecodeImage(const std::vector<int64_t>& ids) const {
  DUET_RETURN_IF_ERROR(ValidateImageTokens(layout, ids, 0));
  std::vector<int> codes(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    codes[i] = static_cast<int>(ids[i] - layout.image_begin);
  return image.Decode(codes);
}

absl::StatusOr<ModelBundle> LoadBundle(const std::string& dir) {
  DUET_ASSIGN_OR_RETURN(ImageTokenizer image,
                        ImageTokenizer::Load(JoinPath(dir, "codebook.safetensors")));
  DUET_ASSIGN_OR_RETURN(std::string meta_text,
                        ReadFileToString(JoinPath(dir, "duet.json")));
  nlohmann::json meta =
      nlohmann::json::parse(meta_text, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object() || !meta.contains("format") ||
      meta["format"] != "duet-bundle-v1") {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/duet.json is not a Duet bundle description"));
  }
  TokenLayout layout = LayoutForCodebook(image.codebook_size(), image.config());
  DUET_ASSIGN_OR_RETURN(Transformer model, Transformer::Load(dir));
  if (model.config().vocab_size != layout.vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": model vocab_size ", model.config().vocab_size,
                     " does not match the codebook's ", layout.vocab_size(), " ids"));
  }
  // duet.json's layout (what workers read with ReadTokenLayout) must be the one the
  // codebook implies, or the learner and its workers would disagree on the token ids.
  DUET_ASSIGN_OR_RETURN(TokenLayout stored, ReadTokenLayout(dir));
  if (!(stored == layout)) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/duet.json: its token layout differs from the one its codebook implies"));
  }
  WorldConfig world = image.config();
  return ModelBundle{std::move(model), layout, world, TextTokenizer(layout),
                     std::move(image)};
}

absl::Status SaveBundle(const std::string& dir, const ModelBundle& bundle) {
  DUET_RETURN_IF_ERROR(MakeDirs(dir));
  DUET_RETURN_IF_ERROR(bundle.model.Save(dir));
  DUET_RETURN_IF_ERROR(bundle.image.Save(JoinPath(dir, "codebook.safetensors")));
  const TokenLayout& l = bundle.layout;
  nlohmann::json meta = {{"format", "duet-bundle-v1"},
                         {"special_tokens",
                          {{"pad", l.pad},
                           {"bos", l.bos},
                           {"eos", l.eos},
                           {"boi", l.boi},
                           {"eoi", l.eoi},
                           {"describe", l.describe},
                           {"draw", l.draw}}},
                         {"text_tokens", {l.text_begin, l.text_end}},
                         {"image_tokens", {l.image_begin, l.image_end}},
                         {"image_tokens_per_image", l.image_tokens},
                         {"max_caption_tokens", l.max_caption_tokens},
                         {"words", TextTokenizer::Words()},
                         {"world",
                          {{"grid", bundle.world.grid},
                           {"cell_px", bundle.world.cell_px},
                           {"patch_px", bundle.world.patch_px}}}};
  return WriteFileAtomically(JoinPath(dir, "duet.json"), meta.dump(2));
}

}  // namespace duet::world
