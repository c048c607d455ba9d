#include "learner/pretrain.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/model/transformer.h"
#include "common/world/dataset.h"

namespace duet {
namespace {

class PretrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);  // bit-exact comparisons need one reduction order
    scratch_ = std::make_unique<testing::ScratchDir>("pretrain");
    root_ = scratch_->path();
    world::MakeDataOptions o;
    o.out_dir = JoinPath(root_, "data");
    o.sft_pairs = 96;
    o.rl_prompts = 8;
    o.rl_images = 8;
    o.eval_per_category = 4;
    o.codebook_size = 32;
    o.tokenizer_images = 64;
    o.tokenizer_iterations = 3;
    ASSERT_TRUE(world::MakeData(o).ok());
  }
  static void TearDownTestSuite() { scratch_.reset(); }

  PretrainOptions Options(const std::string& out, int64_t steps) {
    PretrainOptions o;
    o.data_dir = JoinPath(root_, "data");
    o.out_dir = JoinPath(root_, out);
    o.steps = steps;
    o.batch_size = 8;
    o.warmup_steps = 2;
    o.checkpoint_every = 3;
    return o;
  }

  // One folder for the whole suite: the data set is made once and shared.
  static std::unique_ptr<testing::ScratchDir> scratch_;
  static std::string root_;
};
std::unique_ptr<testing::ScratchDir> PretrainTest::scratch_;
std::string PretrainTest::root_;

TEST_F(PretrainTest, AResumedRunEndsBitIdenticalToAnUninterruptedOne) {
  int64_t last_step = 0;
  PretrainOptions straight = Options("straight", 6);
  straight.on_progress = [&](const PretrainProgress& p) { last_step = p.step; };
  ASSERT_TRUE(Pretrain(straight).ok());
  EXPECT_EQ(last_step, 6);

  ASSERT_TRUE(Pretrain(Options("resumed", 3)).ok());  // "interrupted" after step 3
  EXPECT_EQ(*ReadFileToString(JoinPath(root_, "resumed/checkpoints/LATEST")),
            "step-00000003\n");
  PretrainOptions rest = Options("resumed", 6);
  int64_t first_step = -1;
  rest.on_progress = [&](const PretrainProgress& p) {
    if (first_step < 0) first_step = p.step;
  };
  ASSERT_TRUE(Pretrain(rest).ok());
  EXPECT_EQ(first_step, 4);  // continued at the next step

  auto a = Transformer::Load(JoinPath(root_, "straight/model"));
  auto b = Transformer::Load(JoinPath(root_, "resumed/model"));
  ASSERT_TRUE(a.ok() && b.ok());
  TensorMap ta = a->StateDict(), tb = b->StateDict();
  for (const auto& [name, t] : ta) EXPECT_TRUE(torch::equal(t, tb[name])) << name;
  // Only the newest checkpoint and one before it are kept.
  int kept = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(JoinPath(root_, "resumed/checkpoints"))) {
    kept += e.path().filename().string().rfind("step-", 0) == 0;
  }
  EXPECT_EQ(kept, 2);
}

TEST_F(PretrainTest, BadOptionsAndMissingDataAreClearErrors) {
  PretrainOptions o = Options("bad", 2);
  o.understanding_fraction = 1.5;
  EXPECT_EQ(Pretrain(o).code(), absl::StatusCode::kInvalidArgument);
  o = Options("bad", 2);
  o.data_dir = JoinPath(root_, "no-such-data");
  EXPECT_EQ(Pretrain(o).code(), absl::StatusCode::kNotFound);
  o = Options("bad", 2);
  o.preset = "enormous";
  EXPECT_EQ(Pretrain(o).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet
