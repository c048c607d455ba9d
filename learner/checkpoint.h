#ifndef DUET_LEARNER_CHECKPOINT_H_
#define DUET_LEARNER_CHECKPOINT_H_

// Training checkpoints that are never half-written. A checkpoint is a folder
//   <root>/step-00000400/{config.json, model.safetensors, optimizer.safetensors,
//   state.json}
// assembled under a temporary name, fsync'ed and renamed into place; then <root>/LATEST
// is replaced atomically with its name. A crash at any point leaves LATEST naming a
// complete checkpoint (or no LATEST at all).
//
// Thread-safety: free functions; one writer per root.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/model/safetensors.h"
#include "common/model/transformer.h"
#include "learner/adamw.h"

namespace duet {

struct Checkpoint {
  std::string dir;
  int64_t step = 0;
  TensorMap optimizer;
  std::string state_json;  // trainer-specific (data position, RNG, ...)
};

// Writes the checkpoint of `step` and prunes all but the newest `keep + 1`.
absl::Status WriteCheckpoint(const std::string& root, int64_t step,
                             const Transformer& model, const AdamW& optimizer,
                             const std::string& state_json, int64_t keep = 1);

// The checkpoint LATEST names, or nullopt when there is none. Loads its weights into
// `model` (which must have the checkpoint's shape: InvalidArgument otherwise).
absl::StatusOr<std::optional<Checkpoint>> RestoreLatestCheckpoint(const std::string& root,
                                                                  Transformer& model);

}  // namespace duet

#endif  // DUET_LEARNER_CHECKPOINT_H_
