#ifndef DUET_LEARNER_PRETRAIN_H_
#define DUET_LEARNER_PRETRAIN_H_

// Supervised pretraining of the base model on paired data, in both directions:
// understanding (image -> canonical caption) and generation (caption -> image), mixed by
// a configurable ratio. The default gives understanding more data than generation, so
// that the base model judges better than it draws, as real unified models do.
//
// Resumable: a checkpoint (weights, optimizer state, step) is written every
// `checkpoint_every` steps; a new run on the same `out_dir` continues from the latest.
// The batch of step s depends only on (seed, s), so a resumed run sees the same data.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace duet {

struct PretrainProgress {
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0;
  double understanding_loss = 0;
  double generation_loss = 0;
  double tokens_per_second = 0;
  double elapsed_seconds = 0;
  double lr = 0;
};

struct PretrainOptions {
  std::string data_dir;  // from `duet world make-data`
  std::string out_dir;   // checkpoints/ and the final model/ go here
  std::string preset = "tiny";
  int64_t steps = 1200;
  int64_t batch_size = 64;
  double lr = 3e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 100;
  double weight_decay = 0.01;
  double grad_clip = 1.0;
  // Fraction of each batch that is image -> text.
  double understanding_fraction = 0.7;
  // Fraction of generation examples whose caption is replaced by <pad>s: trains the
  // unconditional branch used by classifier-free guidance.
  double caption_dropout = 0.1;
  int64_t checkpoint_every = 400;
  // Checkpoints kept besides the newest.
  int64_t keep_checkpoints = 1;
  uint64_t seed = 1;
  // Called after every step (from the training thread).
  std::function<void(const PretrainProgress&)> on_progress;

  absl::Status Validate() const;
};

// Runs (or resumes) pretraining and writes the model folder `out_dir`/model.
absl::Status Pretrain(const PretrainOptions& options);

}  // namespace duet

#endif  // DUET_LEARNER_PRETRAIN_H_
