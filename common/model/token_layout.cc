#include "common/model/token_layout.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {

absl::StatusOr<TokenLayout> ReadTokenLayout(const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "duet.json");
  DUET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  TokenLayout l;
  const nlohmann::json& sp = j.value("special_tokens", nlohmann::json());
  for (auto [key, field] : {std::pair<const char*, int64_t*>{"pad", &l.pad},
                            {"bos", &l.bos},
                            {"eos", &l.eos},
                            {"boi", &l.boi},
                            {"eoi", &l.eoi},
                            {"describe", &l.describe},
                            {"draw", &l.draw}}) {
    if (!sp.is_object() || !sp.contains(key) || !sp[key].is_number_integer()) {
      return bad(absl::StrCat("special_tokens.", key, " missing"));
    }
    *field = sp[key].get<int64_t>();
  }
  auto range = [&](const char* key, int64_t* b, int64_t* e) -> absl::Status {
    if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 ||
        !j[key][0].is_number_integer() || !j[key][1].is_number_integer()) {
      return bad(absl::StrCat(key, " must be [begin, end]"));
    }
    *b = j[key][0].get<int64_t>();
    *e = j[key][1].get<int64_t>();
    if (*b < 0 || *e <= *b) return bad(absl::StrCat(key, " is an empty range"));
    return absl::OkStatus();
  };
  DUET_RETURN_IF_ERROR(range("text_tokens", &l.text_begin, &l.text_end));
  DUET_RETURN_IF_ERROR(range("image_tokens", &l.image_begin, &l.image_end));
  if (!j.contains("image_tokens_per_image") ||
      !j["image_tokens_per_image"].is_number_integer() ||
      !j.contains("max_caption_tokens") || !j["max_caption_tokens"].is_number_integer()) {
    return bad("image_tokens_per_image and max_caption_tokens are required");
  }
  l.image_tokens = j["image_tokens_per_image"].get<int64_t>();
  l.max_caption_tokens = j["max_caption_tokens"].get<int64_t>();
  return l;
}

}  // namespace duet
