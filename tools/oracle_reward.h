#ifndef DUET_TOOLS_ORACLE_REWARD_H_
#define DUET_TOOLS_ORACLE_REWARD_H_

// The Shapes world's oracle (common/eval/oracle.h) as a reward, what `duet reward-server`
// serves over duet.v1.Reward: the upper bound of what a perfect judge gives RL. Lives in
// tools/, which may link common/eval/: the learner, rollout and scorer never link the
// oracle, they reach it only over the wire.
//
//   generation pair (prompt ids, image codes):     1 if the decoded image satisfies the
//                                                  prompt (ScoreGeneration), else 0
//   understanding pair (image codes, caption ids): 1 if the caption is true of the scene
//                                                  the oracle reads off the decoded image
//                                                  (ScoreUnderstanding), else 0
//
// The image is the tokenizer's decoding of the codes (the scorer only has ids). An
// understanding input image with cells the oracle cannot read is judged by the objects
// it can read.
//
// Thread-safety: pure function of a const bundle (its tokenizers are immutable).

#include <vector>

#include "absl/status/statusor.h"
#include "common/work/task.h"
#include "common/world/bundle.h"

namespace duet {

// One score in {0, 1} per query, in order. InvalidArgument naming the query
// ("queries[i].input"/".output") when a prompt or caption is not text of the grammar's
// words, a prompt is not in the grammar, or an image's codes are malformed. (A sampled
// caption outside the grammar is not an error: it is false, 0.)
absl::StatusOr<std::vector<double>> OracleRewards(
    const world::ModelBundle& bundle, const std::vector<RewardQuery>& queries);

}  // namespace duet

#endif  // DUET_TOOLS_ORACLE_REWARD_H_
