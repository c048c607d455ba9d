#include "learner/recipe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace duet {
namespace {

using ::testing::HasSubstr;

void ExpectSamplingEq(const SamplingParams& a, const SamplingParams& b,
                      const std::string& what) {
  EXPECT_EQ(a.temperature, b.temperature) << what;
  EXPECT_EQ(a.top_k, b.top_k) << what;
  EXPECT_EQ(a.top_p, b.top_p) << what;
}

// Every field of a Recipe, one by one, so a failure names the field that differs.
void ExpectRecipeEq(const Recipe& a, const Recipe& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.directions, b.directions);
  EXPECT_EQ(a.rl.generation_inputs, b.rl.generation_inputs);
  EXPECT_EQ(a.rl.understanding_inputs, b.rl.understanding_inputs);
  EXPECT_EQ(a.rl.k, b.rl.k);
  ExpectSamplingEq(a.rl.image_sampling, b.rl.image_sampling, "rl.image_sampling");
  EXPECT_EQ(a.rl.cfg_scale, b.rl.cfg_scale);
  ExpectSamplingEq(a.rl.caption_sampling, b.rl.caption_sampling, "rl.caption_sampling");
  EXPECT_EQ(a.rl.consistency_samples, b.rl.consistency_samples);
  EXPECT_EQ(a.rl.seed, b.rl.seed);
  EXPECT_EQ(a.rl.max_lag, b.rl.max_lag);
  EXPECT_EQ(a.rl.collect_ahead, b.rl.collect_ahead);
  EXPECT_EQ(a.max_lag, b.max_lag);
  EXPECT_EQ(a.optimizer.algorithm, b.optimizer.algorithm);
  EXPECT_EQ(a.optimizer.grpo.clip_eps, b.optimizer.grpo.clip_eps);
  EXPECT_EQ(a.optimizer.grpo.kl_coef, b.optimizer.grpo.kl_coef);
  EXPECT_EQ(a.optimizer.grpo.understanding_weight, b.optimizer.grpo.understanding_weight);
  EXPECT_EQ(a.optimizer.simpo.beta, b.optimizer.simpo.beta);
  EXPECT_EQ(a.optimizer.simpo.gamma, b.optimizer.simpo.gamma);
  EXPECT_EQ(a.optimizer.lr, b.optimizer.lr);
  EXPECT_EQ(a.optimizer.weight_decay, b.optimizer.weight_decay);
  EXPECT_EQ(a.optimizer.grad_clip, b.optimizer.grad_clip);
  EXPECT_EQ(a.optimizer.micro_batch, b.optimizer.micro_batch);
  EXPECT_EQ(a.sync_every, b.sync_every);
  EXPECT_EQ(a.bucket_mb, b.bucket_mb);
  EXPECT_EQ(a.checkpoint_every, b.checkpoint_every);
  EXPECT_EQ(a.lease_seconds, b.lease_seconds);
  EXPECT_EQ(a.frozen_scorer, b.frozen_scorer);
  EXPECT_EQ(a.self_reward.image, b.self_reward.image);
  EXPECT_EQ(a.self_reward.caption, b.self_reward.caption);
  EXPECT_TRUE(a.reward == b.reward);
  EXPECT_EQ(a.rollout_workers, b.rollout_workers);
  EXPECT_EQ(a.scorer_workers, b.scorer_workers);
  EXPECT_EQ(a.collective, b.collective);
  EXPECT_EQ(a.broadcast, b.broadcast);
  EXPECT_EQ(a.wire_dtype, b.wire_dtype);
}

// Parses `yaml` and expects InvalidArgument whose message contains `key`.
void ExpectRejected(const std::string& yaml, const std::string& key) {
  absl::StatusOr<Recipe> r = ParseRecipe(yaml);
  ASSERT_FALSE(r.ok()) << "accepted: " << yaml;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << yaml << ": " << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(key)) << yaml;
}

TEST(RecipeTest, EmptyTextGivesTheBuiltInDefaults) {
  for (const std::string text : {"", "\n", "# only a comment\n"}) {
    absl::StatusOr<Recipe> r = ParseRecipe(text);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectRecipeEq(*r, Recipe{});
  }
  // The documented defaults of recipe.h.
  const Recipe d;
  EXPECT_EQ(d.steps, 150);
  EXPECT_EQ(d.directions, "joint");
  EXPECT_TRUE(d.frozen_scorer);
  EXPECT_EQ(d.self_reward.caption, RewardKind::kContrast);
  EXPECT_EQ(d.rl.generation_inputs, 16);
  EXPECT_EQ(d.rl.understanding_inputs, 8);
  EXPECT_EQ(d.rl.k, 8);
  EXPECT_EQ(d.rl.cfg_scale, 1.5);
  EXPECT_EQ(d.rl.seed, 1u);
  EXPECT_EQ(d.optimizer.algorithm, RlAlgorithm::kGrpo);
  EXPECT_EQ(d.optimizer.lr, 1e-4);
  EXPECT_EQ(d.optimizer.grpo.kl_coef, 0.1);
  EXPECT_EQ(d.optimizer.grpo.clip_eps, 0.2);
  EXPECT_EQ(d.collective, "gloo");
  EXPECT_TRUE(d.Validate().ok()) << d.Validate();
}

TEST(RecipeTest, DefaultRecipeFileEqualsTheBuiltInDefaults) {
  const char* source_dir = std::getenv("DUET_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "DUET_SOURCE_DIR is not set (ctest sets it)";
  const std::string path = std::string(source_dir) + "/configs/recipes/default.yaml";
  absl::StatusOr<Recipe> r = LoadRecipe(path);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectRecipeEq(*r, Recipe{});
}

// recipe.h: "configs/recipes/default.yaml spells every one out".
TEST(RecipeTest, DefaultRecipeFileSpellsOutEveryKey) {
  const char* source_dir = std::getenv("DUET_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "DUET_SOURCE_DIR is not set (ctest sets it)";
  const YAML::Node file =
      YAML::LoadFile(std::string(source_dir) + "/configs/recipes/default.yaml");
  const YAML::Node all = YAML::Load(RecipeToYaml(Recipe{}));
  for (const auto& kv : all) {
    const std::string key = kv.first.as<std::string>();
    EXPECT_TRUE(file[key].IsDefined())
        << "default.yaml does not spell out '" << key << "'";
  }
}

// Issue 15, point 5: an empty recipe file silently became the 150-step default.
TEST(RecipeTest, LoadRecipeOfAnEmptyFileIsInvalidArgument) {
  const std::string path = ::testing::TempDir() + "/empty_recipe.yaml";
  for (const char* text : {"", "\n  \n"}) {
    {
      std::ofstream f(path);
      f << text;
    }
    absl::StatusOr<Recipe> r = LoadRecipe(path);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("empty"), absl::string_view::npos) << r.status();
  }
}

TEST(RecipeTest, LoadRecipeOfAMissingFileIsNotFound) {
  absl::StatusOr<Recipe> r = LoadRecipe("/nonexistent/duet/recipe.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST(RecipeTest, ParsesEveryKey) {
  absl::StatusOr<Recipe> r = ParseRecipe(R"(
model: m
data: d
out: o
steps: 7
algorithm: simpo
directions: joint
generation_inputs: 5
understanding_inputs: 3
k: 4
lr: 3.0e-5
grad_clip: 0.5
micro_batch: 16
grpo: {clip_eps: 0.3, kl_coef: 0.05, understanding_weight: 4.0}
simpo: {beta: 1.5, gamma: 0.25}
sampling: {temperature: 0.7, top_k: 20, top_p: 0.9, cfg_scale: 2.0}
sync_every: 3
bucket_mb: 8
checkpoint_every: 5
lease_seconds: 7
frozen_scorer: true
self_reward: {image: pmi, caption: pmi_worst}
seed: 42
workers: {rollout: 4, scorer: 2}
collective: none
)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->data, "d");
  EXPECT_EQ(r->out, "o");
  EXPECT_EQ(r->steps, 7);
  EXPECT_EQ(r->optimizer.algorithm, RlAlgorithm::kSimpo);
  EXPECT_EQ(r->directions, "joint");
  EXPECT_EQ(r->rl.generation_inputs, 5);
  EXPECT_EQ(r->rl.understanding_inputs, 3);
  EXPECT_EQ(r->rl.k, 4);
  EXPECT_EQ(r->optimizer.lr, 3e-5);
  EXPECT_EQ(r->optimizer.grad_clip, 0.5);
  EXPECT_EQ(r->optimizer.micro_batch, 16);
  EXPECT_EQ(r->optimizer.grpo.clip_eps, 0.3);
  EXPECT_EQ(r->optimizer.grpo.kl_coef, 0.05);
  EXPECT_EQ(r->optimizer.grpo.understanding_weight, 4.0);
  EXPECT_EQ(r->optimizer.simpo.beta, 1.5);
  EXPECT_EQ(r->optimizer.simpo.gamma, 0.25);
  EXPECT_EQ(r->rl.image_sampling.temperature, 0.7);
  EXPECT_EQ(r->rl.image_sampling.top_k, 20);
  EXPECT_EQ(r->rl.image_sampling.top_p, 0.9);
  EXPECT_EQ(r->rl.cfg_scale, 2.0);
  // One sampling block drives both directions.
  ExpectSamplingEq(r->rl.caption_sampling, r->rl.image_sampling,
                   "caption = image sampling");
  EXPECT_EQ(r->sync_every, 3);
  EXPECT_EQ(r->bucket_mb, 8);
  EXPECT_EQ(r->checkpoint_every, 5);
  EXPECT_EQ(r->lease_seconds, 7);
  EXPECT_TRUE(r->frozen_scorer);
  EXPECT_EQ(r->self_reward.image, RewardKind::kPmi);
  EXPECT_EQ(r->self_reward.caption, RewardKind::kPmiWorst);
  EXPECT_EQ(r->rl.seed, 42u);
  EXPECT_EQ(r->rollout_workers, 4);
  EXPECT_EQ(r->scorer_workers, 2);
  EXPECT_EQ(r->collective, "none");
}

TEST(RecipeTest, CfgScaleZeroMeansNoGuidance) {
  absl::StatusOr<Recipe> r = ParseRecipe("sampling: {cfg_scale: 0}\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->rl.cfg_scale.has_value());
}

TEST(RecipeTest, PartialRecipeKeepsTheOtherDefaults) {
  absl::StatusOr<Recipe> r = ParseRecipe("steps: 3\ngrpo: {kl_coef: 0.0}\n");
  ASSERT_TRUE(r.ok()) << r.status();
  Recipe expected;
  expected.steps = 3;
  expected.optimizer.grpo.kl_coef = 0.0;
  ExpectRecipeEq(*r, expected);
}

TEST(RecipeTest, UnknownKeysAreRejectedByName) {
  ExpectRejected("stepz: 3\n", "stepz");
  ExpectRejected("grpo: {clip: 0.1}\n", "grpo.clip");
  ExpectRejected("simpo: {alpha: 0.1}\n", "simpo.alpha");
  ExpectRejected("sampling: {min_p: 0.1}\n", "sampling.min_p");
  ExpectRejected("workers: {learner: 1}\n", "workers.learner");
  ExpectRejected("self_reward: {text: pmi}\n", "self_reward.text");
}

TEST(RecipeTest, WrongTypesAreRejectedByName) {
  ExpectRejected("steps: many\n", "steps");
  ExpectRejected("k: 2.5\n", "k");
  ExpectRejected("lr: fast\n", "lr");
  ExpectRejected("frozen_scorer: 3\n", "frozen_scorer");
  ExpectRejected("seed: -1\n", "seed");
  ExpectRejected("steps: [1, 2]\n", "steps");
  ExpectRejected("grpo: 0.2\n", "grpo");
  ExpectRejected("sampling: {top_k: x}\n", "top_k");
  ExpectRejected("workers: {rollout: two}\n", "rollout");
}

TEST(RecipeTest, BadValuesAreRejectedByName) {
  ExpectRejected("steps: -1\n", "steps");
  ExpectRejected("algorithm: ppo\n", "algorithm");
  ExpectRejected("directions: both\n", "directions");
  ExpectRejected("k: 1\n", "k must");
  ExpectRejected("k: 65\n", "k must");
  ExpectRejected("lr: 0\n", "lr");
  ExpectRejected("grpo: {clip_eps: 0}\n", "clip_eps");
  ExpectRejected("simpo: {beta: -1}\n", "simpo.beta");
  ExpectRejected("sampling: {top_p: 0}\n", "top_p");
  ExpectRejected("sampling: {temperature: -1}\n", "temperature");
  ExpectRejected("sync_every: 0\n", "sync_every");
  ExpectRejected("max_lag: -1\n", "max_lag");
  ExpectRejected("max_lag: 17\n", "max_lag");
  ExpectRejected("max_lag: 1.5\n", "max_lag");
  ExpectRejected("max_lag: 2\nsync_every: 2\n", "sync_every: 1");
  ExpectRejected("bucket_mb: 0\n", "bucket_mb");
  ExpectRejected("checkpoint_every: 0\n", "checkpoint_every");
  ExpectRejected("workers: {scorer: -1}\n", "workers");
  ExpectRejected("collective: mpi\n", "collective");
  ExpectRejected("broadcast: ring\n", "broadcast");
  ExpectRejected("wire_dtype: float16\n", "wire_dtype");
  ExpectRejected("self_reward: {caption: clip}\n", "self_reward.caption");
  ExpectRejected("self_reward: {image: 3}\n", "self_reward.image");
  ExpectRejected("generation_inputs: 0\nunderstanding_inputs: 0\n", "inputs");
  ExpectRejected("grpo: {understanding_weight: -1.0}\n", "understanding_weight");
  ExpectRejected("grpo: {understanding_weight: .nan}\n", "understanding_weight");
}

// The direction(s) a recipe trains must get inputs: otherwise every step of the loop
// requests nothing, scores nothing and still counts an update.
TEST(RecipeTest, ATrainedDirectionWithoutInputsIsRejected) {
  ExpectRejected("directions: generation\ngeneration_inputs: 0\n", "inputs");
  ExpectRejected("directions: understanding\nunderstanding_inputs: 0\n", "inputs");
  Recipe r;
  r.directions = "generation";
  r.rl.generation_inputs = 0;
  r.rl.understanding_inputs = 8;
  EXPECT_EQ(r.Validate().code(), absl::StatusCode::kInvalidArgument)
      << "LoopRecipe() would ask for " << r.LoopRecipe().generation_inputs << " + "
      << r.LoopRecipe().understanding_inputs << " inputs per step";
  // Joint training with one direction at 0 inputs is fine.
  r.directions = "joint";
  EXPECT_TRUE(r.Validate().ok()) << r.Validate();
}

TEST(RecipeTest, YamlSyntaxErrorsAndNonMappingsAreInvalidArgument) {
  ExpectRejected("steps: [1, 2\n", "line");
  ExpectRejected("- a\n- b\n", "mapping");
}

Recipe NonDefaultRecipe() {
  Recipe r;
  r.model = "models/base";
  r.data = "data/x";
  r.out = "runs/7";
  r.steps = 12;
  r.directions = "joint";
  r.rl.generation_inputs = 6;
  r.rl.understanding_inputs = 2;
  r.rl.k = 3;
  r.rl.image_sampling.temperature = 0.8;
  r.rl.image_sampling.top_k = 5;
  r.rl.image_sampling.top_p = 0.95;
  r.rl.caption_sampling = r.rl.image_sampling;  // the YAML has one sampling block
  r.rl.cfg_scale = 2.25;
  r.rl.seed = 0x8000000000000005ULL;  // above INT64_MAX
  r.optimizer.algorithm = RlAlgorithm::kSimpo;
  r.optimizer.grpo.clip_eps = 0.15;
  r.optimizer.grpo.kl_coef = 0.01;
  r.optimizer.simpo.beta = 2.5;
  r.optimizer.simpo.gamma = 0.3;
  r.optimizer.lr = 3e-5;
  r.optimizer.grad_clip = 0.7;
  r.optimizer.micro_batch = 17;
  r.sync_every = 4;
  r.self_reward = {RewardKind::kJoint, RewardKind::kPmi};
  r.bucket_mb = 64;
  r.checkpoint_every = 9;
  r.frozen_scorer = true;
  r.rollout_workers = 3;
  r.scorer_workers = 0;
  r.collective = "nccl";
  r.broadcast = "chain";
  r.wire_dtype = "bfloat16";
  return r;
}

TEST(RecipeTest, YamlRoundTrip) {
  for (const Recipe& original : {Recipe{}, NonDefaultRecipe()}) {
    ASSERT_TRUE(original.Validate().ok()) << original.Validate();
    const std::string yaml = RecipeToYaml(original);
    absl::StatusOr<Recipe> parsed = ParseRecipe(yaml);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << yaml;
    SCOPED_TRACE(yaml);
    ExpectRecipeEq(*parsed, original);
    // And the YAML of the parsed recipe is the same text.
    EXPECT_EQ(RecipeToYaml(*parsed), yaml);
  }
}

TEST(RecipeTest, YamlRoundTripWithoutGuidance) {
  Recipe original = NonDefaultRecipe();
  original.rl.cfg_scale = std::nullopt;
  absl::StatusOr<Recipe> parsed = ParseRecipe(RecipeToYaml(original));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->rl.cfg_scale.has_value());
}

TEST(RecipeTest, EmptyOverridesChangeNothing) {
  Recipe r = NonDefaultRecipe();
  ASSERT_TRUE(ApplyOverrides(RecipeOverrides{}, &r).ok());
  ExpectRecipeEq(r, NonDefaultRecipe());
}

TEST(RecipeTest, OverridesSetOnlyTheGivenFields) {
  Recipe r;
  RecipeOverrides o;
  o.steps = 30;
  o.algorithm = "simpo";
  o.lr = 5e-5;
  o.temperature = 0.6;
  o.cfg_scale = 0.0;  // off
  o.seed = 9;
  o.sync_every = 2;
  o.rollout_workers = 5;
  o.caption_reward = "pmi";
  ASSERT_TRUE(ApplyOverrides(o, &r).ok());

  Recipe expected;
  expected.steps = 30;
  expected.optimizer.algorithm = RlAlgorithm::kSimpo;
  expected.optimizer.lr = 5e-5;
  expected.rl.image_sampling.temperature = 0.6;
  expected.rl.caption_sampling.temperature = 0.6;
  expected.rl.cfg_scale = std::nullopt;
  expected.rl.seed = 9;
  expected.sync_every = 2;
  expected.rollout_workers = 5;
  expected.self_reward.caption = RewardKind::kPmi;
  ExpectRecipeEq(r, expected);

  RecipeOverrides more;
  more.model = "a";
  more.data = "b";
  more.out = "c";
  more.directions = "understanding";
  more.generation_inputs = 4;
  more.understanding_inputs = 6;
  more.k = 16;
  more.kl_coef = 0.3;
  more.clip_eps = 0.1;
  more.simpo_beta = 3.0;
  more.simpo_gamma = 0.5;
  more.cfg_scale = 3.0;
  more.frozen_scorer = false;
  more.scorer_workers = 7;
  more.collective = "none";
  more.image_reward = "joint";
  ASSERT_TRUE(ApplyOverrides(more, &r).ok());
  expected.model = "a";
  expected.data = "b";
  expected.out = "c";
  expected.directions = "understanding";
  expected.rl.generation_inputs = 4;
  expected.rl.understanding_inputs = 6;
  expected.rl.k = 16;
  expected.optimizer.grpo.kl_coef = 0.3;
  expected.optimizer.grpo.clip_eps = 0.1;
  expected.optimizer.simpo.beta = 3.0;
  expected.optimizer.simpo.gamma = 0.5;
  expected.rl.cfg_scale = 3.0;
  expected.frozen_scorer = false;
  expected.scorer_workers = 7;
  expected.collective = "none";
  expected.self_reward.image = RewardKind::kJoint;
  ExpectRecipeEq(r, expected);
}

TEST(RecipeTest, OverridesAreValidated) {
  auto expect_bad = [](RecipeOverrides o, const std::string& key) {
    Recipe r;
    absl::Status s = ApplyOverrides(o, &r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(key));
  };
  RecipeOverrides o;
  o.k = 1;
  expect_bad(o, "k must");
  o = {};
  o.algorithm = "ppo";
  expect_bad(o, "algorithm");
  o = {};
  o.directions = "both";
  expect_bad(o, "directions");
  o = {};
  o.lr = -1;
  expect_bad(o, "lr");
  o = {};
  o.temperature = -0.5;
  expect_bad(o, "temperature");
  o = {};
  o.sync_every = 0;
  expect_bad(o, "sync_every");
  o = {};
  o.collective = "mpi";
  expect_bad(o, "collective");
  o = {};
  o.scorer_workers = 1000;
  expect_bad(o, "workers");
  o = {};
  o.caption_reward = "clip";
  expect_bad(o, "self_reward");
}

TEST(RecipeTest, LoopRecipeZeroesTheUntrainedDirection) {
  Recipe r;
  r.rl.generation_inputs = 5;
  r.rl.understanding_inputs = 3;
  r.sync_every = 1;

  r.directions = "generation";
  RlRecipe loop = r.LoopRecipe();
  EXPECT_EQ(loop.generation_inputs, 5);
  EXPECT_EQ(loop.understanding_inputs, 0);
  EXPECT_EQ(loop.max_lag, 0);

  r.directions = "understanding";
  loop = r.LoopRecipe();
  EXPECT_EQ(loop.generation_inputs, 0);
  EXPECT_EQ(loop.understanding_inputs, 3);

  r.directions = "joint";
  loop = r.LoopRecipe();
  EXPECT_EQ(loop.generation_inputs, 5);
  EXPECT_EQ(loop.understanding_inputs, 3);

  // The rest of `rl` passes through; the recipe itself is not changed.
  EXPECT_EQ(loop.k, r.rl.k);
  EXPECT_EQ(loop.seed, r.rl.seed);
  EXPECT_EQ(loop.cfg_scale, r.rl.cfg_scale);
  EXPECT_EQ(r.rl.understanding_inputs, 3);
}

TEST(RecipeTest, LoopRecipeMaxLagIsSyncEveryMinusOne) {
  Recipe r;
  for (int64_t sync_every : {1, 2, 5}) {
    r.sync_every = sync_every;
    EXPECT_EQ(r.LoopRecipe().max_lag, sync_every - 1) << sync_every;
    EXPECT_EQ(r.LoopRecipe().collect_ahead, 0) << "synchronous: nothing collected ahead";
  }
}

TEST(RecipeTest, MaxLagIsSynchronousByDefaultAndAsynchronousAboveZero) {
  EXPECT_EQ(Recipe{}.max_lag, 0);
  absl::StatusOr<Recipe> r = ParseRecipe("max_lag: 3\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->max_lag, 3);
  const RlRecipe loop = r->LoopRecipe();
  EXPECT_EQ(loop.max_lag, 3);
  EXPECT_EQ(loop.collect_ahead, 3);
  // Written and read back.
  absl::StatusOr<Recipe> back = ParseRecipe(RecipeToYaml(*r));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectRecipeEq(*back, *r);
  EXPECT_NE(RecipeToYaml(Recipe{}).find("max_lag: 0"), std::string::npos);

  Recipe o;
  RecipeOverrides over;
  over.max_lag = 2;
  ASSERT_TRUE(ApplyOverrides(over, &o).ok());
  EXPECT_EQ(o.max_lag, 2);
  over.max_lag = -1;
  EXPECT_EQ(ApplyOverrides(over, &o).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet

namespace duet {
namespace {

TEST(RecipeRewardTest, DefaultIsTheSelfRewardAloneAndIsNotWritten) {
  EXPECT_TRUE(Recipe{}.reward.IsSelfOnly());
  EXPECT_EQ(RecipeToYaml(Recipe{}).find("\nreward:"), std::string::npos);
  EXPECT_NE(RecipeToYaml(Recipe{}).find("self_reward:"), std::string::npos);
}

TEST(RecipeFaultsTest, DefaultIsNotWrittenAndAnotherPolicyParsesAndRoundTrips) {
  EXPECT_EQ(RecipeToYaml(Recipe{}).find("faults"), std::string::npos);
  absl::StatusOr<Recipe> r = ParseRecipe(
      "faults: {item_deadline_seconds: 5, item_deadline_per_row_seconds: 0.25, "
      "quarantine_after: 2, "
      "quarantine_cooldown_seconds: 30, poison_workers: 4, sync_grace_seconds: 7}\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->faults.item_deadline_seconds, 5);
  EXPECT_EQ(r->faults.item_deadline_per_row_seconds, 0.25);
  EXPECT_EQ(r->faults.quarantine_after, 2);
  EXPECT_EQ(r->faults.quarantine_cooldown_seconds, 30);
  EXPECT_EQ(r->faults.poison_workers, 4);
  EXPECT_EQ(r->faults.sync_grace_seconds, 7);
  absl::StatusOr<Recipe> again = ParseRecipe(RecipeToYaml(*r));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->faults == r->faults);
  for (const char* bad :
       {"faults: {item_deadline_seconds: 0}", "faults: {poison_workers: 0}",
        "faults: {quarantine_after: -1}", "faults: {item_deadline_per_row_seconds: .nan}",
        "faults: {deadline: 3}"}) {
    absl::StatusOr<Recipe> refused = ParseRecipe(bad);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(refused.status().message().find("faults"), absl::string_view::npos)
        << refused.status();
  }
}

TEST(RecipeRewardTest, ParsesTheMixAndRoundTrips) {
  absl::StatusOr<Recipe> r = ParseRecipe(
      "reward: {self: 0.5, external: 2.0, external_address: \"127.0.0.1:7000\", "
      "timeout_ms: 1500, "
      "auth_token_file: /tmp/judge_token}\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->reward.self, 0.5);
  EXPECT_EQ(r->reward.external, 2.0);
  EXPECT_EQ(r->reward.external_address, "127.0.0.1:7000");
  EXPECT_EQ(r->reward.timeout_ms, 1500);
  EXPECT_EQ(r->reward.auth_token_file, "/tmp/judge_token");
  EXPECT_FALSE(r->reward.IsSelfOnly());
  absl::StatusOr<Recipe> again = ParseRecipe(RecipeToYaml(*r));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->reward == r->reward);
}

// configs/recipes/generation_only.yaml is the default recipe with only the drawing
// direction trained and the policy as its own judge (the default before joint training):
// nothing else may differ, or docs/results.md's comparison with the default would compare
// more than it says, and its regression checksum would guard something else.
TEST(RecipeTest, TheGenerationOnlyRecipeIsTheDefaultWithOneDirectionAndTheCurrentJudge) {
  const char* source_dir = std::getenv("DUET_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "DUET_SOURCE_DIR is not set (ctest sets it)";
  absl::StatusOr<Recipe> r =
      LoadRecipe(std::string(source_dir) + "/configs/recipes/generation_only.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  Recipe expected;
  expected.out = "out/run-generation";
  expected.directions = "generation";
  expected.frozen_scorer = false;
  ExpectRecipeEq(*r, expected);
}

TEST(RecipeRewardTest, TheOracleRewardRecipeIsGenerationOnlyWithTheOracleAsTheReward) {
  const char* source_dir = std::getenv("DUET_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "DUET_SOURCE_DIR is not set (ctest sets it)";
  absl::StatusOr<Recipe> r =
      LoadRecipe(std::string(source_dir) + "/configs/recipes/oracle_reward.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->reward.self, 0.0);
  EXPECT_EQ(r->reward.external, 1.0);
  EXPECT_EQ(r->reward.external_address, "127.0.0.1:50070");
  Recipe expected;  // generation_only.yaml's
  expected.out = "out/run-oracle";
  expected.directions = "generation";
  expected.frozen_scorer = false;
  expected.reward = r->reward;
  ExpectRecipeEq(*r, expected);
}

TEST(RecipeRewardTest, BadMixesAreInvalidArgumentNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"reward: {external: 1.0}\n", "reward.external_address"},
      {"reward: {self: 0.0}\n", "both weights are 0"},
      {"reward: {self: .nan}\n", "finite"},
      {"reward: {external: 1.0, external_address: \"h:1\", timeout_ms: 0}\n",
       "reward.timeout_ms"},
      {"reward: {weight: 1.0}\n", "weight"},
  };
  for (const auto& [yaml, needle] : cases) {
    absl::StatusOr<Recipe> r = ParseRecipe(yaml);
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
    EXPECT_NE(r.status().message().find(needle), std::string::npos)
        << yaml << ": " << r.status();
  }
}

// --set KEY=VALUE (duet-learner, duet local, duet rl): any key, nested with dots, applied
// on top of the recipe's text and parsed by the same checks.
TEST(RecipeSettingsTest, SetsNestedKeysOnTopOfTheTextAndSectionsItLacks) {
  auto r = ParseRecipe(
      "steps: 40\ngrpo: {clip_eps: 0.3}\n",
      {"steps=3", "grpo.kl_coef=0.05", "self_reward.caption=joint", "workers.rollout=4",
       "reward.timeout_ms=500", "faults.poison_workers=5", "steps=7"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 7);  // in order: the last wins
  EXPECT_DOUBLE_EQ(r->optimizer.grpo.kl_coef, 0.05);
  EXPECT_DOUBLE_EQ(r->optimizer.grpo.clip_eps, 0.3);  // the text's, kept
  EXPECT_EQ(r->self_reward.caption, RewardKind::kJoint);
  EXPECT_EQ(r->rollout_workers, 4);
  EXPECT_EQ(r->reward.timeout_ms, 500);
  EXPECT_EQ(r->faults.poison_workers, 5);
}

TEST(RecipeSettingsTest, BadSettingsAreInvalidArgumentNamingThem) {
  struct Case {
    std::string setting, message;
  };
  for (const Case& c :
       std::vector<Case>{{"grpo.kl_coeff=1", "unknown key 'grpo.kl_coeff'"},
                         {"stepz=3", "unknown key 'stepz'"},
                         {"steps", "want KEY=VALUE"},
                         {"=3", "want KEY=VALUE"},
                         {"grpo..kl_coef=1", "want KEY=VALUE"},
                         {"steps=", "no value"},
                         {"steps=abc", "'steps' has the wrong type"},
                         {"algorithm=ppo", "algorithm must be grpo or simpo"},
                         {"grpo=3", "grpo must be a mapping"}}) {
    auto r = ParseRecipe("", {c.setting});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.setting;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message)) << c.setting;
  }
}

// --help lists every key with its default, and each listed key is one that --set accepts
// (set to its default, it changes nothing): the list and the parser agree.
TEST(RecipeSettingsTest, EveryListedKeyIsSettableAndEveryParsedKeyIsListed) {
  const std::vector<std::string> keys = RecipeKeyDefaults();
  const std::string defaults = RecipeToYaml(Recipe());
  for (const std::string& kv : keys) {
    auto r = ParseRecipe("", {kv});
    ASSERT_TRUE(r.ok()) << kv << ": " << r.status();
    EXPECT_EQ(RecipeToYaml(*r), defaults) << kv;
  }
  std::vector<std::string> names;
  for (const std::string& kv : keys) names.push_back(kv.substr(0, kv.find('=')));
  for (const std::string& key : {"model",
                                 "data",
                                 "out",
                                 "steps",
                                 "algorithm",
                                 "directions",
                                 "generation_inputs",
                                 "understanding_inputs",
                                 "k",
                                 "lr",
                                 "grad_clip",
                                 "micro_batch",
                                 "grpo.clip_eps",
                                 "grpo.kl_coef",
                                 "grpo.understanding_weight",
                                 "simpo.beta",
                                 "simpo.gamma",
                                 "sampling.temperature",
                                 "sampling.top_k",
                                 "sampling.top_p",
                                 "sampling.cfg_scale",
                                 "sync_every",
                                 "max_lag",
                                 "bucket_mb",
                                 "checkpoint_every",
                                 "lease_seconds",
                                 "frozen_scorer",
                                 "self_reward.image",
                                 "self_reward.caption",
                                 "reward.self",
                                 "reward.external",
                                 "reward.external_address",
                                 "reward.timeout_ms",
                                 "reward.auth_token_file",
                                 "faults.item_deadline_seconds",
                                 "faults.item_deadline_per_row_seconds",
                                 "faults.quarantine_after",
                                 "faults.quarantine_cooldown_seconds",
                                 "faults.poison_workers",
                                 "faults.sync_grace_seconds",
                                 "seed",
                                 "collective",
                                 "broadcast",
                                 "wire_dtype",
                                 "workers.rollout",
                                 "workers.scorer"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), key), names.end())
        << key << " is not listed";
  }
  EXPECT_EQ(names.size(), 46u) << "a key was added: list it above";
}

TEST(RecipeSettingsTest, LoadRecipeAppliesTheSettingsAndStillRefusesAnEmptyFile) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/settings_recipe.yaml";
  std::ofstream(path) << "steps: 40\n";
  auto r = LoadRecipe(path, {"steps=2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 2);
  std::ofstream(path) << "\n";
  EXPECT_EQ(LoadRecipe(path, {"steps=2"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace duet
