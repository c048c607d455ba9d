// `duet dev reward-agreement`: how well do the self-rewards agree with the oracle?
// For held-out inputs of each direction, sample K outputs, score them with the model's
// own reversed pass and with the oracle, and report: the oracle accuracy of a random
// sample, of the sample the self-reward ranks first (best-of-K), and the pairwise
// ranking accuracy P(reward(correct) > reward(wrong)) within groups.

#include <cstdio>
#include <thread>

#include <gflags/gflags.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "eval/oracle.h"
#include "rollout/sampler.h"
#include "scorer/self_reward.h"
#include "tools/commands.h"
#include "world/bundle.h"
#include "world/dataset.h"
#include "world/png_io.h"

DECLARE_string(model);
DECLARE_string(data);
DECLARE_uint64(seed);
DECLARE_int32(threads);
DECLARE_double(cfg_scale);
DECLARE_double(temperature);
DECLARE_int64(k);
DEFINE_int32(agreement_inputs, 100, "reward-agreement: inputs per direction");

namespace duet {
namespace {

struct Agreement {
  double random_accuracy = 0;
  double best_of_k_accuracy = 0;
  double pairwise_accuracy = 0;
  int64_t pairs = 0;
};

// labels[g][s]: oracle verdict; rewards[g][s]: self-reward.
Agreement Measure(const std::vector<std::vector<bool>>& labels, const std::vector<std::vector<double>>& rewards) {
  Agreement a;
  int64_t n = 0, correct = 0, best = 0, right_pairs = 0;
  for (size_t g = 0; g < labels.size(); ++g) {
    size_t arg = 0;
    for (size_t s = 0; s < labels[g].size(); ++s) {
      correct += labels[g][s];
      ++n;
      if (rewards[g][s] > rewards[g][arg]) arg = s;
      for (size_t t = 0; t < labels[g].size(); ++t) {
        if (labels[g][s] && !labels[g][t]) {
          ++a.pairs;
          right_pairs += rewards[g][s] > rewards[g][t];
        }
      }
    }
    best += labels[g][arg];
  }
  a.random_accuracy = n ? static_cast<double>(correct) / n : 0;
  a.best_of_k_accuracy = labels.empty() ? 0 : static_cast<double>(best) / labels.size();
  a.pairwise_accuracy = a.pairs ? static_cast<double>(right_pairs) / a.pairs : 0;
  return a;
}

absl::Status Run() {
  DUET_ASSIGN_OR_RETURN(world::ModelBundle b, world::LoadBundle(FLAGS_model));
  DUET_ASSIGN_OR_RETURN(auto prompts, world::ReadPrompts(JoinPath(FLAGS_data, "eval_gen.jsonl")));
  DUET_ASSIGN_OR_RETURN(auto images, world::ReadImages(JoinPath(FLAGS_data, "eval_und.jsonl")));
  const size_t n = static_cast<size_t>(FLAGS_agreement_inputs);
  // Spread the inputs over the categories (the files list them category by category).
  auto spread = [n](size_t total) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < std::min(n, total); ++i) idx.push_back(i * total / std::min(n, total));
    return idx;
  };
  RolloutRequest gen;
  gen.task = Task::kGeneration;
  gen.k = FLAGS_k;
  gen.sampling.temperature = FLAGS_temperature;
  gen.cfg_scale = FLAGS_cfg_scale;
  gen.seed = FLAGS_seed;
  std::vector<size_t> gen_idx = spread(prompts.size());
  for (size_t i : gen_idx) {
    DUET_ASSIGN_OR_RETURN(auto ids, b.EncodeCaption(prompts[i].prompt));
    gen.inputs.push_back(ids);
  }
  DUET_ASSIGN_OR_RETURN(auto gen_groups, SampleGroups(b.model, b.layout, gen, 0));
  std::vector<RewardQuery> queries;
  std::vector<std::vector<bool>> gen_labels;
  for (size_t g = 0; g < gen_groups.size(); ++g) {
    gen_labels.emplace_back();
    for (const Sample& s : gen_groups[g].samples) {
      queries.push_back({Task::kGeneration, gen_groups[g].input, s.output});
      DUET_ASSIGN_OR_RETURN(world::Image im, b.DecodeImage(s.output));
      gen_labels.back().push_back(eval::ScoreGeneration(prompts[gen_idx[g]].parsed, im, b.world).correct);
    }
  }
  DUET_ASSIGN_OR_RETURN(auto gen_rewards_flat, ComputeSelfRewards(b.model, b.layout, queries));
  std::vector<std::vector<double>> gen_rewards;
  for (size_t g = 0, q = 0; g < gen_groups.size(); ++g) {
    gen_rewards.emplace_back(gen_rewards_flat.begin() + q, gen_rewards_flat.begin() + q + gen.k);
    q += gen.k;
  }

  RolloutRequest und;
  und.task = Task::kUnderstanding;
  und.k = FLAGS_k;
  und.sampling.temperature = FLAGS_temperature;
  und.seed = FLAGS_seed + 1;
  std::vector<size_t> und_idx = spread(images.size());
  std::vector<world::Scene> truths;
  const int px = b.world.image_px();
  for (size_t i : und_idx) {
    DUET_ASSIGN_OR_RETURN(world::Image im, world::ReadPng(images[i].image, px, px));
    DUET_ASSIGN_OR_RETURN(auto ids, b.EncodeImage(im));
    und.inputs.push_back(ids);
    truths.push_back(eval::ParseImage(im, b.world).scene);
  }
  DUET_ASSIGN_OR_RETURN(auto und_groups, SampleGroups(b.model, b.layout, und, 0));
  queries.clear();
  std::vector<std::vector<bool>> und_labels;
  for (size_t g = 0; g < und_groups.size(); ++g) {
    und_labels.emplace_back();
    for (const Sample& s : und_groups[g].samples) {
      queries.push_back({Task::kUnderstanding, und_groups[g].input, s.output});
      DUET_ASSIGN_OR_RETURN(std::string text, b.DecodeCaption(s.output));
      und_labels.back().push_back(eval::ScoreUnderstanding(truths[g], text).correct);
    }
  }
  DUET_ASSIGN_OR_RETURN(auto und_rewards_flat, ComputeSelfRewards(b.model, b.layout, queries));
  std::vector<std::vector<double>> und_rewards;
  for (size_t g = 0, q = 0; g < und_groups.size(); ++g) {
    und_rewards.emplace_back(und_rewards_flat.begin() + q, und_rewards_flat.begin() + q + und.k);
    q += und.k;
  }
  // Generation agreement per category.
  for (world::Category c : {world::Category::kSingle, world::Category::kCounting, world::Category::kTwoObjects,
                            world::Category::kPosition}) {
    std::vector<std::vector<bool>> l;
    std::vector<std::vector<double>> r;
    for (size_t g = 0; g < gen_idx.size(); ++g) {
      if (prompts[gen_idx[g]].category != c) continue;
      l.push_back(gen_labels[g]);
      r.push_back(gen_rewards[g]);
    }
    Agreement a = Measure(l, r);
    std::printf("  generation/%-12s random %5.1f%%  best-of-k %5.1f%%  pairwise %5.1f%% (%ld pairs)\n",
                std::string(world::CategoryName(c)).c_str(), 100 * a.random_accuracy, 100 * a.best_of_k_accuracy,
                100 * a.pairwise_accuracy, static_cast<long>(a.pairs));
  }
  nlohmann::json out;
  for (auto [name, a] : {std::pair<const char*, Agreement>{"generation", Measure(gen_labels, gen_rewards)},
                         {"understanding", Measure(und_labels, und_rewards)}}) {
    std::printf("%-14s random sample %5.1f%%  best-of-%ld by self-reward %5.1f%%  pairwise ranking %5.1f%% (%ld pairs)\n",
                name, 100 * a.random_accuracy, static_cast<long>(FLAGS_k), 100 * a.best_of_k_accuracy,
                100 * a.pairwise_accuracy, static_cast<long>(a.pairs));
  }
  return absl::OkStatus();
}

}  // namespace

int RunRewardAgreement() { return RunCommand("dev reward-agreement", Run); }

}  // namespace duet
