#include "learner/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>
#include <string>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/model/test_models.h"
#include "learner/testing/tiny_training.h"

namespace duet {
namespace {

namespace fs = std::filesystem;

using testing::TinyModel;
using testing::TrainOneStep;

void ExpectSameTensors(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_TRUE(torch::equal(t, it->second)) << name;
  }
}

std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.insert(e.path().filename().string());
  return out;
}

class CheckpointTest : public ::testing::Test {
 protected:
  const testing::ScratchDir scratch_{"checkpoint_test"};
  // Not created: the tests start from a missing checkpoint folder.
  const std::string root_ = scratch_.Join("checkpoints");
};

TEST_F(CheckpointTest, WriteThenRestoreRoundTrips) {
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  TrainOneStep(model, opt);
  TrainOneStep(model, opt);
  const std::string state = R"({"data_position": 17, "rng": [1, 2, 3]})";
  ASSERT_TRUE(WriteCheckpoint(root_, /*step=*/7, model, opt, state).ok());

  Transformer restored = TinyModel(2);  // different weights before the restore
  bool differs = false;
  for (const auto& [name, t] : model.StateDict())
    differs |= !torch::equal(t, restored.StateDict().at(name));
  ASSERT_TRUE(differs) << "test setup: the two models must start different";

  auto ckpt = RestoreLatestCheckpoint(root_, restored);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_TRUE(ckpt->has_value());
  const Checkpoint& c = **ckpt;
  EXPECT_EQ(c.step, 7);
  EXPECT_EQ(c.dir, JoinPath(root_, "step-00000007"));
  EXPECT_EQ(c.state_json, state);
  ExpectSameTensors(restored.StateDict(), model.StateDict());
  ExpectSameTensors(c.optimizer, opt.State());

  // The optimizer state loads into an optimizer over the restored model.
  AdamW opt2(restored.parameters(), AdamWOptions{});
  ASSERT_TRUE(opt2.LoadState(c.optimizer).ok());
  EXPECT_EQ(opt2.step(), 2);
  ExpectSameTensors(opt2.State(), opt.State());
}

TEST_F(CheckpointTest, RestoreFromAnEmptyOrMissingFolderIsNullopt) {
  Transformer model = TinyModel(1);
  auto missing = RestoreLatestCheckpoint(root_, model);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  ASSERT_TRUE(MakeDirs(root_).ok());
  auto empty = RestoreLatestCheckpoint(root_, model);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(empty->has_value());
}

TEST_F(CheckpointTest, LatestNamesTheNewest) {
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  for (int64_t step : {10, 20, 30}) {
    TrainOneStep(model, opt);
    ASSERT_TRUE(WriteCheckpoint(root_, step, model, opt,
                                "{\"s\": " + std::to_string(step) + "}",
                                /*keep=*/10)
                    .ok());
    auto latest = ReadFileToString(JoinPath(root_, "LATEST"));
    ASSERT_TRUE(latest.ok()) << latest.status();
    EXPECT_EQ(*latest, "step-" + std::string(6, '0') + std::to_string(step) + "\n");
  }
  Transformer restored = TinyModel(3);
  auto ckpt = RestoreLatestCheckpoint(root_, restored);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_TRUE(ckpt->has_value());
  EXPECT_EQ((*ckpt)->step, 30);
  EXPECT_EQ((*ckpt)->state_json, "{\"s\": 30}");
  ExpectSameTensors(restored.StateDict(), model.StateDict());
  EXPECT_EQ(Entries(root_), (std::set<std::string>{"LATEST", "step-00000010",
                                                   "step-00000020", "step-00000030"}));
}

TEST_F(CheckpointTest, KeepPrunesOlderCheckpoints) {
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  for (int64_t step = 1; step <= 5; ++step) {
    ASSERT_TRUE(WriteCheckpoint(root_, step, model, opt, "{}", /*keep=*/2).ok());
  }
  // The newest plus `keep` older ones.
  EXPECT_EQ(Entries(root_), (std::set<std::string>{"LATEST", "step-00000003",
                                                   "step-00000004", "step-00000005"}));

  ASSERT_TRUE(WriteCheckpoint(root_, 6, model, opt, "{}", /*keep=*/0).ok());
  EXPECT_EQ(Entries(root_), (std::set<std::string>{"LATEST", "step-00000006"}));

  ASSERT_TRUE(WriteCheckpoint(root_, 7, model, opt, "{}").ok());  // default keep = 1
  EXPECT_EQ(Entries(root_),
            (std::set<std::string>{"LATEST", "step-00000006", "step-00000007"}));
}

TEST_F(CheckpointTest, HalfWrittenCheckpointIsNeverPickedUp) {
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  ASSERT_TRUE(WriteCheckpoint(root_, 1, model, opt, "{\"good\": true}").ok());

  // A crashed writer of step 2: its temporary folder (with a truncated weights file), and
  // a published folder whose LATEST update never happened.
  const std::string tmp = JoinPath(root_, ".step-00000002.tmp-999999");
  ASSERT_TRUE(MakeDirs(tmp).ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(tmp, "model.safetensors"), "trunc").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(tmp, "state.json"), "{\"good\": false}").ok());
  fs::copy(JoinPath(root_, "step-00000001"), JoinPath(root_, "step-00000003"));
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(JoinPath(root_, "step-00000003"), "state.json"),
                          "{\"good\": false}")
          .ok());

  Transformer restored = TinyModel(2);
  auto ckpt = RestoreLatestCheckpoint(root_, restored);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_TRUE(ckpt->has_value());
  EXPECT_EQ((*ckpt)->step, 1);
  EXPECT_EQ((*ckpt)->state_json, "{\"good\": true}");

  // The next write clears the crashed writer's temporary folder.
  ASSERT_TRUE(WriteCheckpoint(root_, 4, model, opt, "{}", /*keep=*/5).ok());
  EXPECT_FALSE(PathExists(tmp));
}

TEST_F(CheckpointTest, CrashBeforeAnyLatestLeavesNothingToRestore) {
  const std::string tmp = JoinPath(root_, ".step-00000001.tmp-999999");
  ASSERT_TRUE(MakeDirs(tmp).ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(tmp, "state.json"), "{}").ok());
  Transformer model = TinyModel(1);
  auto ckpt = RestoreLatestCheckpoint(root_, model);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_FALSE(ckpt->has_value());
}

TEST_F(CheckpointTest, RestoreIntoAModelOfAnotherShapeIsInvalidArgument) {
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  ASSERT_TRUE(WriteCheckpoint(root_, 1, model, opt, "{}").ok());

  ModelConfig other = testing::TinyTestConfig(testing::TinyTestLayout().vocab_size());
  other.hidden_size = 64;
  auto wide = Transformer::Create(other, 5);
  ASSERT_TRUE(wide.ok()) << wide.status();
  const TensorMap before = wide->StateDict();
  auto ckpt = RestoreLatestCheckpoint(root_, *wide);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument) << ckpt.status();
  ExpectSameTensors(wide->StateDict(), before);
}

TEST_F(CheckpointTest, LatestNamingSomethingElseIsDataLoss) {
  ASSERT_TRUE(MakeDirs(root_).ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(root_, "LATEST"), "../../etc\n").ok());
  Transformer model = TinyModel(1);
  auto ckpt = RestoreLatestCheckpoint(root_, model);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss) << ckpt.status();
}

}  // namespace
}  // namespace duet
