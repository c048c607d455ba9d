#ifndef DUET_LEARNER_LEDGER_H_
#define DUET_LEARNER_LEDGER_H_

// The learner's ledger of trained groups: `<run>/ledger.jsonl`, one line per prompt group
// the learner trained on, written when its step's update is applied:
//   {"step":3,"direction":"generation","input":17,"item":"run1a2b3c4d-i42","samples":8}
// `step` is 1-based (as metrics.jsonl), `input` the index of the prompt (generation) or
// image (understanding) in the RL data (rl_gen_prompts.jsonl / rl_und_images.jsonl),
// `item` the rollout work item that sampled the group ("" in process). Audits and the
// fault tests read it: with workers killed and replaced, every group of every step is
// trained once.
//
// A resumed run re-runs the steps after its checkpoint; opening the ledger drops their
// lines first, so that each trained step's groups appear once.
//
// Thread-safety: LedgerWriter is thread-compatible (the training thread's); the free
// functions are pure or touch only the given file.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/work/task.h"

namespace duet {

// One group a step trained on (StepReport::trained).
struct TrainedGroup {
  Task task = Task::kGeneration;
  int64_t input = -1;  // index in the RL data of its direction; -1: unknown
  std::string item;    // the rollout work item that sampled it; "" in process
  int64_t samples = 0;
};

// One ledger line.
struct LedgerEntry {
  int64_t step = 0;  // 1-based
  TrainedGroup group;
};

// The JSON line of `entry` (no newline).
std::string LedgerLine(const LedgerEntry& entry);
// Parses one line; InvalidArgument when it is not a ledger line.
absl::StatusOr<LedgerEntry> ParseLedgerLine(const std::string& line);
// Every entry of the ledger at `path` in order (none when the file does not exist);
// DataLoss naming the line when one does not parse.
absl::StatusOr<std::vector<LedgerEntry>> ReadLedger(const std::string& path);

class LedgerWriter {
 public:
  // Opens `path` for appending (creating it), after dropping the lines whose step is past
  // `keep_through_step` (the checkpoint's step on a resume; 0 on a fresh run keeps none)
  // and any unreadable line a crash cut short. Unavailable when it cannot be written.
  static absl::StatusOr<LedgerWriter> Open(const std::string& path,
                                           int64_t keep_through_step);

  // Appends one line per group of step `step` (1-based) and flushes.
  absl::Status Append(int64_t step, const std::vector<TrainedGroup>& groups);

 private:
  explicit LedgerWriter(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::ofstream out_;
};

}  // namespace duet

#endif  // DUET_LEARNER_LEDGER_H_
