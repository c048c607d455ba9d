// `duet dev reward-agreement`: how well do the self-rewards agree with the oracle?
// For held-out inputs of each direction, sample K outputs, score them with the model's
// own reversed pass (every reward kind of --reward_kinds, from one conditional and one
// null-input pass) and with the oracle, and report per direction, kind and category: the
// oracle accuracy of a random sample, of the sample the reward ranks first (best-of-K),
// and the pairwise agreement P(reward(accepted) > reward(rejected)) over the pairs of one
// group that the oracle ranks differently (ties count one half). With
// --agreement_seeds=N the sampling is repeated under seeds seed..seed+N-1 and each
// figure is the mean, the sample standard deviation and the 95% interval of the mean.

#include <gflags/gflags.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/eval/oracle.h"
#include "common/world/bundle.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"
#include "rollout/sampler.h"
#include "scorer/self_reward.h"
#include "tools/agreement.h"
#include "tools/commands.h"

DECLARE_string(model);
DECLARE_string(data);
DECLARE_uint64(seed);
DECLARE_double(cfg_scale);
DECLARE_double(temperature);
DECLARE_int64(k);
DEFINE_int32(agreement_inputs, 100, "reward-agreement: inputs per direction");
DEFINE_string(reward_kinds, "likelihood,pmi,pmi_worst,joint,contrast",
              "reward-agreement: self-reward kinds to compare (comma-separated: "
              "likelihood, pmi, pmi_worst, joint, contrast)");
DEFINE_int32(
    agreement_seeds, 1,
    "reward-agreement: sampling seeds (seed..seed+N-1); figures are means over them");
DEFINE_string(agreement_images, "eval_und.jsonl",
              "reward-agreement: the understanding direction's images, a file in --data "
              "(eval_und_hard.jsonl: the hard split's position and mixed scenes)");
DEFINE_string(agreement_json, "",
              "reward-agreement: also write every figure, per seed and summarized, here");

namespace duet {
namespace {

// Mixed appears only with --agreement_images=eval_und_hard.jsonl (categories with no
// groups under any seed are left out of the table).
constexpr world::Category kCategories[] = {
    world::Category::kSingle, world::Category::kCounting, world::Category::kTwoObjects,
    world::Category::kPosition, world::Category::kMixed};

// One direction's sampled groups under one seed: the oracle's verdicts, each group's
// category and each sample's reversed-pair scores.
struct Groups {
  std::vector<std::vector<bool>> labels;
  std::vector<world::Category> categories;
  std::vector<std::vector<PairScores>> scores;
};

// Every figure of one seed: [direction][kind][category or "overall"].
using Figures =
    std::map<std::string, std::map<std::string, std::map<std::string, Agreement>>>;

absl::Status ScoreGroups(const world::ModelBundle& b, const std::vector<Group>& groups,
                         std::vector<std::vector<bool>> labels,
                         std::vector<world::Category> categories, ExtraPasses passes,
                         Groups* out) {
  std::vector<RewardQuery> queries;
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) queries.push_back({g.task, g.input, s.output});
  }
  DUET_ASSIGN_OR_RETURN(
      std::vector<PairScores> flat,
      ScoreReversedPairs(b.model, b.layout, queries, /*max_batch=*/256,
                         std::vector<ExtraPasses>(queries.size(), passes)));
  out->labels = std::move(labels);
  out->categories = std::move(categories);
  out->scores.clear();
  size_t q = 0;
  for (const Group& g : groups) {
    out->scores.emplace_back(flat.begin() + q, flat.begin() + q + g.samples.size());
    q += g.samples.size();
  }
  return absl::OkStatus();
}

std::map<std::string, Agreement> Measure(const Groups& groups, RewardKind kind) {
  std::map<std::string, Agreement> out;
  auto measure = [&](std::optional<world::Category> only) {
    std::vector<std::vector<bool>> l;
    std::vector<std::vector<double>> r;
    for (size_t g = 0; g < groups.labels.size(); ++g) {
      if (only && groups.categories[g] != *only) continue;
      l.push_back(groups.labels[g]);
      r.emplace_back();
      for (const PairScores& s : groups.scores[g])
        r.back().push_back(CombineReward(kind, s));
    }
    return MeasureAgreement(l, r);
  };
  for (world::Category c : kCategories)
    out[std::string(world::CategoryName(c))] = measure(c);
  out["overall"] = measure(std::nullopt);
  return out;
}

// Spreads n picks over a file that lists its items category by category.
std::vector<size_t> Spread(size_t n, size_t total) {
  std::vector<size_t> idx;
  const size_t m = std::min(n, total);
  for (size_t i = 0; i < m; ++i) idx.push_back(i * total / m);
  return idx;
}

absl::StatusOr<Figures> MeasureSeed(const world::ModelBundle& b,
                                    const std::vector<world::PromptRecord>& prompts,
                                    const std::vector<world::ImageRecord>& images,
                                    const std::vector<world::Image>& pixels,
                                    const std::vector<RewardKind>& kinds, uint64_t seed) {
  ExtraPasses passes;
  for (RewardKind k : kinds) {
    passes.null |= NeedsNullPass(k);
    passes.forward |= NeedsForwardPass(k);
    passes.variants |= NeedsVariantPasses(k);
  }
  const size_t n = static_cast<size_t>(FLAGS_agreement_inputs);

  RolloutRequest gen;
  gen.task = Task::kGeneration;
  gen.k = FLAGS_k;
  gen.sampling.temperature = FLAGS_temperature;
  gen.cfg_scale = FLAGS_cfg_scale;
  gen.seed = seed;
  const std::vector<size_t> gen_idx = Spread(n, prompts.size());
  for (size_t i : gen_idx) {
    DUET_ASSIGN_OR_RETURN(auto ids, b.EncodeCaption(prompts[i].prompt));
    gen.inputs.push_back(ids);
  }
  DUET_ASSIGN_OR_RETURN(auto gen_groups, SampleGroups(b.model, b.layout, gen, 0));
  std::vector<std::vector<bool>> labels;
  std::vector<world::Category> categories;
  for (size_t g = 0; g < gen_groups.size(); ++g) {
    labels.emplace_back();
    categories.push_back(prompts[gen_idx[g]].category);
    for (const Sample& s : gen_groups[g].samples) {
      DUET_ASSIGN_OR_RETURN(world::Image im, b.DecodeImage(s.output));
      labels.back().push_back(
          eval::ScoreGeneration(prompts[gen_idx[g]].parsed, im, b.world).correct);
    }
  }
  Groups gen_scored;
  DUET_RETURN_IF_ERROR(ScoreGroups(b, gen_groups, std::move(labels),
                                   std::move(categories), passes, &gen_scored));

  RolloutRequest und;
  und.task = Task::kUnderstanding;
  und.k = FLAGS_k;
  und.sampling.temperature = FLAGS_temperature;
  und.seed = seed + 1;
  const std::vector<size_t> und_idx = Spread(n, images.size());
  std::vector<world::Scene> truths;
  for (size_t i : und_idx) {
    DUET_ASSIGN_OR_RETURN(auto ids, b.EncodeImage(pixels[i]));
    und.inputs.push_back(ids);
    truths.push_back(eval::ParseImage(pixels[i], b.world).scene);
  }
  DUET_ASSIGN_OR_RETURN(auto und_groups, SampleGroups(b.model, b.layout, und, 0));
  labels.clear();
  categories.clear();
  for (size_t g = 0; g < und_groups.size(); ++g) {
    labels.emplace_back();
    categories.push_back(images[und_idx[g]].category);
    for (const Sample& s : und_groups[g].samples) {
      DUET_ASSIGN_OR_RETURN(std::string text, b.DecodeCaption(s.output));
      labels.back().push_back(eval::ScoreUnderstanding(truths[g], text).correct);
    }
  }
  Groups und_scored;
  DUET_RETURN_IF_ERROR(ScoreGroups(b, und_groups, std::move(labels),
                                   std::move(categories), passes, &und_scored));
  Figures f;
  for (RewardKind k : kinds) {
    const std::string name(RewardKindName(k));
    f["generation"][name] = Measure(gen_scored, k);
    f["understanding"][name] = Measure(und_scored, k);
  }
  return f;
}

std::string Percent(const SeedSummary& s) {
  return s.n < 2 ? absl::StrFormat("%5.1f%%", 100 * s.mean)
                 : absl::StrFormat("%5.1f%% ±%4.1f", 100 * s.mean, 100 * s.stddev);
}

absl::Status Run() {
  std::vector<RewardKind> kinds;
  for (absl::string_view name :
       absl::StrSplit(FLAGS_reward_kinds, ',', absl::SkipEmpty())) {
    DUET_ASSIGN_OR_RETURN(RewardKind k, ParseRewardKind(std::string(name)));
    kinds.push_back(k);
  }
  if (kinds.empty())
    return absl::InvalidArgumentError("--reward_kinds: name at least one kind");
  if (FLAGS_agreement_seeds < 1)
    return absl::InvalidArgumentError("--agreement_seeds must be >= 1");
  DUET_ASSIGN_OR_RETURN(world::ModelBundle b, world::LoadBundle(FLAGS_model));
  DUET_ASSIGN_OR_RETURN(auto prompts,
                        world::ReadPrompts(JoinPath(FLAGS_data, "eval_gen.jsonl")));
  DUET_ASSIGN_OR_RETURN(auto images,
                        world::ReadImages(JoinPath(FLAGS_data, FLAGS_agreement_images)));
  std::vector<world::Image> pixels;
  const int px = b.world.image_px();
  for (const world::ImageRecord& r : images) {
    DUET_ASSIGN_OR_RETURN(world::Image im, world::ReadPng(r.image, px, px));
    pixels.push_back(std::move(im));
  }
  std::vector<Figures> per_seed;
  for (int s = 0; s < FLAGS_agreement_seeds; ++s) {
    DUET_ASSIGN_OR_RETURN(Figures f,
                          MeasureSeed(b, prompts, images, pixels, kinds, FLAGS_seed + s));
    per_seed.push_back(std::move(f));
  }

  std::printf(
      "reward agreement: %d inputs per direction, K = %ld, %d seed(s) from %lu%s\n",
      FLAGS_agreement_inputs, static_cast<long>(FLAGS_k), FLAGS_agreement_seeds,
      static_cast<unsigned long>(FLAGS_seed),
      FLAGS_agreement_seeds > 1 ? " (mean ± sample std over seeds)" : "");
  std::printf("%-13s %-10s %-12s %15s %15s %15s %8s\n", "direction", "kind", "category",
              "random", "best-of-K", "pairwise", "pairs");
  nlohmann::json json = {{"inputs_per_direction", FLAGS_agreement_inputs},
                         {"k", FLAGS_k},
                         {"seeds", FLAGS_agreement_seeds},
                         {"first_seed", FLAGS_seed},
                         {"figures", nlohmann::json::object()}};
  for (const auto& [direction, by_kind] : per_seed[0]) {
    for (RewardKind k : kinds) {
      const std::string kind(RewardKindName(k));
      std::vector<std::string> order;
      for (world::Category c : kCategories) order.emplace_back(world::CategoryName(c));
      order.push_back("overall");
      for (const std::string& category : order) {
        if (std::all_of(per_seed.begin(), per_seed.end(), [&](const Figures& f) {
              return f.at(direction).at(kind).at(category).groups == 0;
            })) {
          continue;
        }
        std::vector<double> random, best, pairwise, pairs;
        for (const Figures& f : per_seed) {
          const Agreement& a = f.at(direction).at(kind).at(category);
          random.push_back(a.random_accuracy);
          best.push_back(a.best_of_k_accuracy);
          pairwise.push_back(a.pairwise_accuracy);
          pairs.push_back(static_cast<double>(a.pairs));
        }
        const SeedSummary r = Summarize(random), bk = Summarize(best),
                          pw = Summarize(pairwise), np = Summarize(pairs);
        std::printf("%-13s %-10s %-12s %15s %15s %15s %8.0f\n", direction.c_str(),
                    kind.c_str(), category.c_str(), Percent(r).c_str(),
                    Percent(bk).c_str(), Percent(pw).c_str(), np.mean);
        auto summary = [](const SeedSummary& s, const std::vector<double>& v) {
          return nlohmann::json{{"mean", s.mean}, {"stddev", s.stddev}, {"ci95", s.ci95},
                                {"min", s.min},   {"max", s.max},       {"per_seed", v}};
        };
        json["figures"][direction][kind][category] = {{"random", summary(r, random)},
                                                      {"best_of_k", summary(bk, best)},
                                                      {"pairwise", summary(pw, pairwise)},
                                                      {"pairs", summary(np, pairs)}};
      }
    }
  }
  if (!FLAGS_agreement_json.empty()) {
    DUET_RETURN_IF_ERROR(WriteFileAtomically(FLAGS_agreement_json, json.dump(2)));
  }
  return absl::OkStatus();
}

}  // namespace

int RunRewardAgreement() { return RunCommand("dev reward-agreement", Run); }

}  // namespace duet
