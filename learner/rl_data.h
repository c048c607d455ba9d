#ifndef DUET_LEARNER_RL_DATA_H_
#define DUET_LEARNER_RL_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/world/bundle.h"

namespace duet {

// Reads the unpaired RL sets of `data_dir` (rl_gen_prompts.jsonl: text-only prompts;
// rl_und_images.jsonl: images only) and tokenizes them with the bundle's tokenizers.
absl::Status LoadRlInputs(const world::ModelBundle& bundle, const std::string& data_dir,
                          std::vector<std::vector<int64_t>>* prompts,
                          std::vector<std::vector<int64_t>>* images);

}  // namespace duet

#endif  // DUET_LEARNER_RL_DATA_H_
