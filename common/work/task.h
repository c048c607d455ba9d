#ifndef DUET_COMMON_WORK_TASK_H_
#define DUET_COMMON_WORK_TASK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/sampling.h"

namespace duet {

// The two directions of a unified model.
enum class Task {
  kGeneration,     // text -> image: input caption ids, output image ids
  kUnderstanding,  // image -> text: input image ids, output caption ids (+ <eos>)
};

inline std::string_view TaskName(Task task) {
  return task == Task::kGeneration ? "generation" : "understanding";
}

// One sampled output of a group.
struct Sample {
  std::vector<int64_t> output;         // image ids, or caption ids ending in <eos>
  std::vector<float> policy_logprobs;  // behaviour policy, per output token
  int64_t policy_version = 0;
  double reward = 0;
};

// The K samples of one input.
struct Group {
  Task task = Task::kGeneration;
  std::vector<int64_t> input;  // caption ids, or image ids
  std::vector<Sample> samples;
  // Where it came from, for the learner's ledger (learner/ledger.h): the input's index in
  // the RL data of its direction (-1: not known) and the rollout work item that sampled
  // it ("" in process).
  int64_t input_index = -1;
  std::string item_id;
};

// A rollout work item: K samples for each input.
struct RolloutRequest {
  Task task = Task::kGeneration;
  std::vector<std::vector<int64_t>> inputs;  // caption ids (generation) or image ids
  int64_t k = 1;
  SamplingParams sampling;
  std::optional<double> cfg_scale;  // images only; nullopt = no guidance
  uint64_t seed = 0;  // sample j of input i uses SampleSeed(seed, input_offset + i, j)
  int64_t input_offset = 0;  // index of inputs[0] in the whole step's request
  // The learner's policy version when the request is made (RlLoop owns it). An in-process
  // backend samples with exactly these weights; a worker pool samples with the weights it
  // was last sent, and each Sample says which version produced it.
  int64_t policy_version = 0;
};

// A scoring work item: one reversed pair.
struct RewardQuery {
  Task task = Task::kGeneration;  // the direction the output was sampled in
  std::vector<int64_t> input;     // caption ids (generation) or image ids (understanding)
  std::vector<int64_t> output;  // image ids, or caption ids (a trailing <eos> is dropped)
};

// Where the learner sends rollout work. Implementations: in-process (rollout/) and the
// gRPC worker pool (learner/). Thread-safety: implementations say.
class RolloutBackend {
 public:
  virtual ~RolloutBackend() = default;
  // One Group per input, each with request.k samples and policy_version set.
  virtual absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) = 0;
};

// Where the learner sends scoring work.
class ScoreBackend {
 public:
  virtual ~ScoreBackend() = default;
  // One reward per query, in order. `policy_version` is the learner's policy version when
  // the queries are made (as RolloutRequest::policy_version).
  virtual absl::StatusOr<std::vector<double>> Score(
      const std::vector<RewardQuery>& queries, int64_t policy_version) = 0;
};

}  // namespace duet

#endif  // DUET_COMMON_WORK_TASK_H_
