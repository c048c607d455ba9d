#include "learner/rl_data.h"

#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"

namespace duet {

absl::Status LoadRlInputs(const world::ModelBundle& bundle, const std::string& data_dir,
                          std::vector<std::vector<int64_t>>* prompts,
                          std::vector<std::vector<int64_t>>* images) {
  DUET_ASSIGN_OR_RETURN(auto prompt_records,
                        world::ReadPrompts(JoinPath(data_dir, "rl_gen_prompts.jsonl")));
  DUET_ASSIGN_OR_RETURN(auto image_records,
                        world::ReadImages(JoinPath(data_dir, "rl_und_images.jsonl")));
  prompts->clear();
  images->clear();
  for (const auto& p : prompt_records) {
    DUET_ASSIGN_OR_RETURN(auto ids, bundle.EncodeCaption(p.prompt));
    prompts->push_back(std::move(ids));
  }
  const int px = bundle.world.image_px();
  for (const auto& r : image_records) {
    DUET_ASSIGN_OR_RETURN(world::Image im, world::ReadPng(r.image, px, px));
    DUET_ASSIGN_OR_RETURN(auto ids, bundle.EncodeImage(im));
    images->push_back(std::move(ids));
  }
  return absl::OkStatus();
}

}  // namespace duet
