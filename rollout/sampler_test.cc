#include "rollout/sampler.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "common/model/test_models.h"

namespace duet {
namespace {

class SamplerTest : public ::testing::Test {
 protected:
  SamplerTest()
      : layout_(testing::TinyTestLayout()),
        model_(
            Transformer::Create(testing::TinyTestConfig(layout_.vocab_size()), /*seed=*/3)
                .value()) {}

  RolloutRequest Generation(int64_t k = 4) const {
    RolloutRequest r;
    r.task = Task::kGeneration;
    r.inputs = {{8, 9}, {10, 11, 12}, {13}, {14, 15, 16, 17, 18}};
    r.k = k;
    r.cfg_scale = 1.5;
    r.seed = 1234;
    r.policy_version = 7;
    return r;
  }

  RolloutRequest Understanding(int64_t k = 4) const {
    RolloutRequest r;
    r.task = Task::kUnderstanding;
    r.inputs = {{32, 33, 34, 35}, {40, 41, 42, 43}, {47, 46, 45, 44}};
    r.k = k;
    r.seed = 99;
    return r;
  }

  absl::StatusOr<std::vector<Group>> Run(const RolloutRequest& r, int64_t version = 7,
                                         int64_t max_batch = 256) const {
    return SampleGroups(model_, layout_, r, version, max_batch);
  }

  static void ExpectSameSamples(const std::vector<Group>& a,
                                const std::vector<Group>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].input, b[i].input);
      ASSERT_EQ(a[i].samples.size(), b[i].samples.size());
      for (size_t j = 0; j < a[i].samples.size(); ++j) {
        const Sample& x = a[i].samples[j];
        const Sample& y = b[i].samples[j];
        EXPECT_EQ(x.output, y.output) << "input " << i << " sample " << j;
        ASSERT_EQ(x.policy_logprobs.size(), y.policy_logprobs.size());
        for (size_t t = 0; t < x.policy_logprobs.size(); ++t) {
          EXPECT_NEAR(x.policy_logprobs[t], y.policy_logprobs[t], 1e-4);
        }
      }
    }
  }

  static bool AnyDifferent(const std::vector<Group>& a, const std::vector<Group>& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      for (size_t j = 0; j < a[i].samples.size(); ++j) {
        if (a[i].samples[j].output != b[i].samples[j].output) return true;
      }
    }
    return false;
  }

  TokenLayout layout_;
  Transformer model_;
};

TEST_F(SamplerTest, GenerationGivesKValidImagesPerInput) {
  const RolloutRequest r = Generation();
  auto groups = Run(r, /*version=*/7);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), r.inputs.size());
  for (size_t i = 0; i < groups->size(); ++i) {
    const Group& g = (*groups)[i];
    EXPECT_EQ(g.task, Task::kGeneration);
    EXPECT_EQ(g.input, r.inputs[i]);
    ASSERT_EQ(g.samples.size(), 4u);
    for (const Sample& s : g.samples) {
      ASSERT_EQ(static_cast<int64_t>(s.output.size()), layout_.image_tokens);
      for (int64_t id : s.output) EXPECT_TRUE(layout_.IsImage(id)) << id;
      ASSERT_EQ(s.policy_logprobs.size(), s.output.size());
      for (float lp : s.policy_logprobs) {
        EXPECT_TRUE(std::isfinite(lp));
        EXPECT_LE(lp, 0.0f);
      }
      EXPECT_EQ(s.policy_version, 7);
      EXPECT_EQ(s.reward, 0.0);
    }
  }
}

TEST_F(SamplerTest, UnderstandingGivesKValidCaptionsPerInput) {
  const RolloutRequest r = Understanding(/*k=*/3);
  auto groups = Run(r, /*version=*/2);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), r.inputs.size());
  for (size_t i = 0; i < groups->size(); ++i) {
    const Group& g = (*groups)[i];
    EXPECT_EQ(g.task, Task::kUnderstanding);
    EXPECT_EQ(g.input, r.inputs[i]);
    ASSERT_EQ(g.samples.size(), 3u);
    for (const Sample& s : g.samples) {
      ASSERT_GE(s.output.size(), 2u);  // at least one word and <eos>
      ASSERT_LE(static_cast<int64_t>(s.output.size()), layout_.max_caption_tokens + 1);
      EXPECT_EQ(s.output.back(), layout_.eos);
      for (size_t t = 0; t + 1 < s.output.size(); ++t)
        EXPECT_TRUE(layout_.IsText(s.output[t])) << s.output[t];
      ASSERT_EQ(s.policy_logprobs.size(), s.output.size());
      for (float lp : s.policy_logprobs) {
        EXPECT_TRUE(std::isfinite(lp));
        EXPECT_LE(lp, 0.0f);
      }
      EXPECT_EQ(s.policy_version, 2);
    }
  }
}

TEST_F(SamplerTest, SamplesOfAGroupDiffer) {
  auto groups = Run(Generation(/*k=*/8));
  ASSERT_TRUE(groups.ok()) << groups.status();
  for (const Group& g : *groups) {
    bool any_different = false;
    for (const Sample& s : g.samples) any_different |= s.output != g.samples[0].output;
    EXPECT_TRUE(any_different) << "all 8 samples of a group are the same image";
  }
}

TEST_F(SamplerTest, SameSeedSameSamplesDifferentSeedDifferent) {
  for (const RolloutRequest& r : {Generation(), Understanding()}) {
    auto a = Run(r);
    auto b = Run(r);
    ASSERT_TRUE(a.ok() && b.ok());
    ExpectSameSamples(*a, *b);

    RolloutRequest other = r;
    other.seed = r.seed + 1;
    auto c = Run(other);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(AnyDifferent(*a, *c)) << TaskName(r.task);
  }
}

TEST_F(SamplerTest, SplittingWithInputOffsetGivesTheWholeRequestsSamples) {
  for (const RolloutRequest& whole : {Generation(), Understanding()}) {
    SCOPED_TRACE(TaskName(whole.task));
    auto expected = Run(whole);
    ASSERT_TRUE(expected.ok()) << expected.status();

    std::vector<Group> joined;
    const size_t n = whole.inputs.size();
    for (auto [b, e] : std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, n}}) {
      RolloutRequest part = whole;
      part.inputs.assign(whole.inputs.begin() + b, whole.inputs.begin() + e);
      part.input_offset = whole.input_offset + static_cast<int64_t>(b);
      auto got = Run(part);
      ASSERT_TRUE(got.ok()) << got.status();
      for (auto& g : *got) joined.push_back(std::move(g));
    }
    ExpectSameSamples(joined, *expected);

    // Without the offset, the second part would repeat the first part's seeds.
    RolloutRequest no_offset = whole;
    no_offset.inputs.assign(whole.inputs.begin() + 1, whole.inputs.end());
    auto shifted = Run(no_offset);
    ASSERT_TRUE(shifted.ok());
    std::vector<Group> tail(expected->begin() + 1, expected->end());
    EXPECT_TRUE(AnyDifferent(*shifted, tail));
  }
}

TEST_F(SamplerTest, MaxBatchDoesNotChangeTheSamples) {
  for (const RolloutRequest& r : {Generation(/*k=*/3), Understanding(/*k=*/3)}) {
    auto whole = Run(r, 7, /*max_batch=*/256);
    auto chunked = Run(r, 7, /*max_batch=*/5);  // chunks cut through groups
    ASSERT_TRUE(whole.ok() && chunked.ok());
    ExpectSameSamples(*chunked, *whole);
  }
}

TEST_F(SamplerTest, InProcessRolloutStampsTheRequestsVersion) {
  InProcessRollout rollout(&model_, layout_);
  RolloutRequest r = Generation(/*k=*/2);
  r.policy_version = 13;
  auto groups = rollout.Sample(r);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), r.inputs.size());
  for (const Group& g : *groups) {
    for (const Sample& s : g.samples) EXPECT_EQ(s.policy_version, 13);
  }
  auto direct = Run(r, /*version=*/13);
  ASSERT_TRUE(direct.ok());
  ExpectSameSamples(*groups, *direct);
}

TEST_F(SamplerTest, SampleSeedIsAPureFunctionOfItsArguments) {
  EXPECT_EQ(SampleSeed(1, 2, 3), SampleSeed(1, 2, 3));
  EXPECT_NE(SampleSeed(1, 2, 3), SampleSeed(1, 2, 4));
  EXPECT_NE(SampleSeed(1, 2, 3), SampleSeed(1, 3, 3));
  EXPECT_NE(SampleSeed(1, 2, 3), SampleSeed(2, 2, 3));
}

void ExpectInvalid(const absl::StatusOr<std::vector<Group>>& r, const std::string& what) {
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << what << ": " << r.status();
}

TEST_F(SamplerTest, InvalidRequestsAreInvalidArgument) {
  RolloutRequest r = Generation();
  r.k = 0;
  ExpectInvalid(Run(r), "k = 0");
  r.k = 65;
  ExpectInvalid(Run(r), "k = 65");

  r = Generation();
  r.inputs[1] = {};
  ExpectInvalid(Run(r), "empty caption");
  r = Generation();
  r.inputs[0] = {8, 9, 10, 11, 12, 13};
  ExpectInvalid(Run(r), "caption longer than max_caption_tokens");
  r = Generation();
  r.inputs[2] = {8, layout_.image_begin};
  ExpectInvalid(Run(r), "image code in a caption");
  r = Generation();
  r.inputs[2] = {8, 999};
  ExpectInvalid(Run(r), "caption id out of the vocabulary");
  r = Generation();
  r.inputs[2] = {-1};
  ExpectInvalid(Run(r), "negative id");

  r = Understanding();
  r.inputs[0] = {};
  ExpectInvalid(Run(r), "empty image");
  r = Understanding();
  r.inputs[0] = {32, 33, 34};
  ExpectInvalid(Run(r), "image with too few codes");
  r = Understanding();
  r.inputs[1] = {32, 33, 34, 9};
  ExpectInvalid(Run(r), "text id in an image");
  r = Understanding();
  r.inputs[1] = {32, 33, 34, 48};
  ExpectInvalid(Run(r), "image id out of the vocabulary");

  r = Generation();
  r.sampling.top_p = 0;
  ExpectInvalid(Run(r), "top_p = 0");
  r = Generation();
  r.sampling.temperature = -1;
  ExpectInvalid(Run(r), "negative temperature");
  ExpectInvalid(Run(Generation(), 7, /*max_batch=*/0), "max_batch = 0");
}

}  // namespace
}  // namespace duet
