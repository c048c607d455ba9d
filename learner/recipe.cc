#include "learner/recipe.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

template <typename T>
absl::Status Read(const YAML::Node& node, const std::string& key, T* out) {
  const YAML::Node v = node[key];
  if (!v) return absl::OkStatus();
  try {
    *out = v.as<T>();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recipe: '", key, "' has the wrong type (line ", v.Mark().line + 1, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckKeys(const YAML::Node& node, const std::string& where,
                       const std::set<std::string>& allowed) {
  if (!node.IsMap())
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: ", where, " must be a mapping"));
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (allowed.count(key) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("recipe: unknown key '", where.empty() ? "" : where + ".", key,
                       "' (line ", kv.first.Mark().line + 1, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Recipe::Validate() const {
  auto bad = [](const std::string& m) {
    return absl::InvalidArgumentError("recipe: " + m);
  };
  if (steps < 0) return bad("steps must be >= 0");
  if (directions != "joint" && directions != "generation" &&
      directions != "understanding") {
    return bad("directions must be joint, generation or understanding");
  }
  if (rl.k < 2 || rl.k > 64) return bad("k must be in [2, 64]");
  if (rl.generation_inputs < 0 || rl.understanding_inputs < 0)
    return bad("*_inputs must be >= 0");
  const RlRecipe trained = LoopRecipe();
  if (trained.generation_inputs + trained.understanding_inputs == 0) {
    return bad("no inputs per step in the trained directions (" + directions + ")");
  }
  if (!(optimizer.lr > 0)) return bad("lr must be positive");
  if (optimizer.grpo.clip_eps <= 0 || optimizer.grpo.kl_coef < 0)
    return bad("grpo.clip_eps > 0 and grpo.kl_coef >= 0 required");
  if (!(optimizer.grpo.understanding_weight >= 0))
    return bad("grpo.understanding_weight >= 0 required");
  if (optimizer.simpo.beta <= 0) return bad("simpo.beta must be positive");
  DUET_RETURN_IF_ERROR(rl.image_sampling.Validate());
  if (sync_every < 1) return bad("sync_every must be >= 1");
  if (max_lag < 0 || max_lag > kMaxLag)
    return bad(absl::StrCat("max_lag must be in [0, ", kMaxLag, "]"));
  if (max_lag > 0 && sync_every != 1) {
    return bad("max_lag > 0 (asynchronous mode) requires sync_every: 1");
  }
  if (bucket_mb < 1 || bucket_mb > 1024) return bad("bucket_mb must be in [1, 1024]");
  if (checkpoint_every < 1) return bad("checkpoint_every must be >= 1");
  if (lease_seconds < 1 || lease_seconds > 3600)
    return bad("lease_seconds must be in [1, 3600]");
  if (!(faults.item_deadline_seconds >= 1 && faults.item_deadline_seconds <= 86400) ||
      !(faults.item_deadline_per_row_seconds >= 0 &&
        faults.item_deadline_per_row_seconds <= 3600)) {
    return bad(
        "faults.item_deadline_seconds must be in [1, 86400] and "
        "item_deadline_per_row_seconds in [0, 3600]");
  }
  if (faults.quarantine_after < 0 || faults.quarantine_after > 1000) {
    return bad("faults.quarantine_after must be in [0, 1000] (0: never)");
  }
  if (!(faults.quarantine_cooldown_seconds >= 0 &&
        faults.quarantine_cooldown_seconds <= 86400)) {
    return bad("faults.quarantine_cooldown_seconds must be in [0, 86400]");
  }
  if (faults.poison_workers < 1 || faults.poison_workers > 64)
    return bad("faults.poison_workers must be in [1, 64]");
  if (!(faults.sync_grace_seconds >= 1 && faults.sync_grace_seconds <= 86400)) {
    return bad("faults.sync_grace_seconds must be in [1, 86400]");
  }
  if (rollout_workers < 0 || scorer_workers < 0 || rollout_workers > 256 ||
      scorer_workers > 256) {
    return bad("workers counts must be in [0, 256]");
  }
  if (collective != "gloo" && collective != "nccl" && collective != "none") {
    return bad("collective must be gloo, nccl or none");
  }
  if (broadcast != "collective" && broadcast != "chain") {
    return bad("broadcast must be collective or chain");
  }
  if (wire_dtype != "float32" && wire_dtype != "bfloat16") {
    return bad("wire_dtype must be float32 or bfloat16");
  }
  if (absl::Status s = ValidateRewardMix(reward); !s.ok())
    return bad("reward." + std::string(s.message()));
  return absl::OkStatus();
}

RlRecipe Recipe::LoopRecipe() const {
  RlRecipe out = rl;
  if (directions == "generation") out.understanding_inputs = 0;
  if (directions == "understanding") out.generation_inputs = 0;
  if (max_lag > 0) {
    out.max_lag = max_lag;
    out.collect_ahead = max_lag;
  } else {
    out.max_lag = sync_every - 1;
    out.collect_ahead = 0;
  }
  return out;
}

absl::Status ApplyOverrides(const RecipeOverrides& o, Recipe* r) {
  if (o.model) r->model = *o.model;
  if (o.data) r->data = *o.data;
  if (o.out) r->out = *o.out;
  if (o.steps) r->steps = *o.steps;
  if (o.algorithm) {
    if (*o.algorithm != "grpo" && *o.algorithm != "simpo") {
      return absl::InvalidArgumentError("recipe: algorithm must be grpo or simpo");
    }
    r->optimizer.algorithm =
        *o.algorithm == "simpo" ? RlAlgorithm::kSimpo : RlAlgorithm::kGrpo;
  }
  if (o.directions) r->directions = *o.directions;
  if (o.generation_inputs) r->rl.generation_inputs = *o.generation_inputs;
  if (o.understanding_inputs) r->rl.understanding_inputs = *o.understanding_inputs;
  if (o.k) r->rl.k = *o.k;
  if (o.lr) r->optimizer.lr = *o.lr;
  if (o.kl_coef) r->optimizer.grpo.kl_coef = *o.kl_coef;
  if (o.clip_eps) r->optimizer.grpo.clip_eps = *o.clip_eps;
  if (o.simpo_beta) r->optimizer.simpo.beta = *o.simpo_beta;
  if (o.simpo_gamma) r->optimizer.simpo.gamma = *o.simpo_gamma;
  if (o.temperature) {
    r->rl.image_sampling.temperature = *o.temperature;
    r->rl.caption_sampling.temperature = *o.temperature;
  }
  if (o.cfg_scale)
    r->rl.cfg_scale =
        *o.cfg_scale > 0 ? std::optional<double>(*o.cfg_scale) : std::nullopt;
  if (o.frozen_scorer) r->frozen_scorer = *o.frozen_scorer;
  for (auto [name, kind] : {std::pair{&o.image_reward, &r->self_reward.image},
                            std::pair{&o.caption_reward, &r->self_reward.caption}}) {
    if (!name->has_value()) continue;
    absl::StatusOr<RewardKind> k = ParseRewardKind(**name);
    if (!k.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("recipe: self_reward: ", k.status().message()));
    *kind = *k;
  }
  if (o.seed) r->rl.seed = *o.seed;
  if (o.sync_every) r->sync_every = *o.sync_every;
  if (o.max_lag) r->max_lag = *o.max_lag;
  if (o.rollout_workers) r->rollout_workers = *o.rollout_workers;
  if (o.scorer_workers) r->scorer_workers = *o.scorer_workers;
  if (o.collective) r->collective = *o.collective;
  return r->Validate();
}

namespace {

// Sets `path` (recipe keys, outermost first) to `value` in the mapping `node`, making the
// sections on the way.
void SetPath(YAML::Node node, const std::vector<std::string>& path, size_t i,
             const YAML::Node& value) {
  if (i + 1 == path.size()) {
    node[path[i]] = value;
    return;
  }
  YAML::Node child = node[path[i]];
  if (!child.IsMap())
    child = YAML::Node(YAML::NodeType::Map);  // replaces the value in `node`
  SetPath(child, path, i + 1, value);
}

absl::Status ApplySetting(const std::string& setting, YAML::Node* root) {
  const size_t eq = setting.find('=');
  const std::string usage =
      "want KEY=VALUE, KEY a recipe key with dots for nesting (grpo.kl_coef=0.05; --help "
      "lists them)";
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--set '", setting, "': ", usage));
  }
  const std::vector<std::string> path = absl::StrSplit(setting.substr(0, eq), '.');
  for (const std::string& p : path) {
    if (p.empty())
      return absl::InvalidArgumentError(absl::StrCat("--set '", setting, "': ", usage));
  }
  YAML::Node value;
  try {
    value = YAML::Load(setting.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set '", setting, "': the value is not YAML: ", e.msg));
  }
  if (!value || value.IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat("--set '", setting, "': no value"));
  }
  if (!root->IsMap()) *root = YAML::Node(YAML::NodeType::Map);
  SetPath(*root, path, 0, value);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Recipe> ParseRecipe(const std::string& text,
                                   const std::vector<std::string>& settings) {
  Recipe r;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: YAML error at line ", e.mark.line + 1, ": ", e.msg));
  }
  if (!settings.empty()) {
    for (const std::string& setting : settings)
      DUET_RETURN_IF_ERROR(ApplySetting(setting, &root));
    // Parsed as text again, so that every key and value goes through the checks below;
    // their messages then name the setting rather than a line.
    YAML::Emitter e;
    e << root;
    absl::StatusOr<Recipe> set = ParseRecipe(e.c_str());
    if (!set.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(set.status().message(), " (with --set ",
                       absl::StrJoin(settings, " --set "), ")"));
    }
    return set;
  }
  if (!root || root.IsNull()) return r;
  DUET_RETURN_IF_ERROR(CheckKeys(root, "",
                                 {"model",
                                  "data",
                                  "out",
                                  "steps",
                                  "algorithm",
                                  "directions",
                                  "generation_inputs",
                                  "understanding_inputs",
                                  "k",
                                  "lr",
                                  "grpo",
                                  "simpo",
                                  "sampling",
                                  "sync_every",
                                  "max_lag",
                                  "bucket_mb",
                                  "checkpoint_every",
                                  "lease_seconds",
                                  "faults",
                                  "frozen_scorer",
                                  "self_reward",
                                  "reward",
                                  "seed",
                                  "workers",
                                  "collective",
                                  "broadcast",
                                  "wire_dtype",
                                  "grad_clip",
                                  "micro_batch"}));
  DUET_RETURN_IF_ERROR(Read(root, "model", &r.model));
  DUET_RETURN_IF_ERROR(Read(root, "data", &r.data));
  DUET_RETURN_IF_ERROR(Read(root, "out", &r.out));
  DUET_RETURN_IF_ERROR(Read(root, "steps", &r.steps));
  std::string algorithm = "grpo";
  DUET_RETURN_IF_ERROR(Read(root, "algorithm", &algorithm));
  if (algorithm == "simpo") {
    r.optimizer.algorithm = RlAlgorithm::kSimpo;
  } else if (algorithm != "grpo") {
    return absl::InvalidArgumentError("recipe: algorithm must be grpo or simpo");
  }
  DUET_RETURN_IF_ERROR(Read(root, "directions", &r.directions));
  DUET_RETURN_IF_ERROR(Read(root, "generation_inputs", &r.rl.generation_inputs));
  DUET_RETURN_IF_ERROR(Read(root, "understanding_inputs", &r.rl.understanding_inputs));
  DUET_RETURN_IF_ERROR(Read(root, "k", &r.rl.k));
  DUET_RETURN_IF_ERROR(Read(root, "lr", &r.optimizer.lr));
  DUET_RETURN_IF_ERROR(Read(root, "grad_clip", &r.optimizer.grad_clip));
  DUET_RETURN_IF_ERROR(Read(root, "micro_batch", &r.optimizer.micro_batch));
  if (root["grpo"]) {
    DUET_RETURN_IF_ERROR(
        CheckKeys(root["grpo"], "grpo", {"clip_eps", "kl_coef", "understanding_weight"}));
    DUET_RETURN_IF_ERROR(Read(root["grpo"], "clip_eps", &r.optimizer.grpo.clip_eps));
    DUET_RETURN_IF_ERROR(Read(root["grpo"], "kl_coef", &r.optimizer.grpo.kl_coef));
    DUET_RETURN_IF_ERROR(Read(root["grpo"], "understanding_weight",
                              &r.optimizer.grpo.understanding_weight));
  }
  if (root["simpo"]) {
    DUET_RETURN_IF_ERROR(CheckKeys(root["simpo"], "simpo", {"beta", "gamma"}));
    DUET_RETURN_IF_ERROR(Read(root["simpo"], "beta", &r.optimizer.simpo.beta));
    DUET_RETURN_IF_ERROR(Read(root["simpo"], "gamma", &r.optimizer.simpo.gamma));
  }
  if (root["sampling"]) {
    const YAML::Node s = root["sampling"];
    DUET_RETURN_IF_ERROR(
        CheckKeys(s, "sampling", {"temperature", "top_k", "top_p", "cfg_scale"}));
    DUET_RETURN_IF_ERROR(Read(s, "temperature", &r.rl.image_sampling.temperature));
    DUET_RETURN_IF_ERROR(Read(s, "top_k", &r.rl.image_sampling.top_k));
    DUET_RETURN_IF_ERROR(Read(s, "top_p", &r.rl.image_sampling.top_p));
    double cfg = r.rl.cfg_scale.value_or(0);
    DUET_RETURN_IF_ERROR(Read(s, "cfg_scale", &cfg));
    r.rl.cfg_scale = cfg > 0 ? std::optional<double>(cfg) : std::nullopt;
  }
  r.rl.caption_sampling = r.rl.image_sampling;
  DUET_RETURN_IF_ERROR(Read(root, "sync_every", &r.sync_every));
  DUET_RETURN_IF_ERROR(Read(root, "max_lag", &r.max_lag));
  DUET_RETURN_IF_ERROR(Read(root, "bucket_mb", &r.bucket_mb));
  DUET_RETURN_IF_ERROR(Read(root, "checkpoint_every", &r.checkpoint_every));
  DUET_RETURN_IF_ERROR(Read(root, "lease_seconds", &r.lease_seconds));
  if (root["faults"]) {
    const YAML::Node f = root["faults"];
    DUET_RETURN_IF_ERROR(CheckKeys(
        f, "faults",
        {"item_deadline_seconds", "item_deadline_per_row_seconds", "quarantine_after",
         "quarantine_cooldown_seconds", "poison_workers", "sync_grace_seconds"}));
    DUET_RETURN_IF_ERROR(
        Read(f, "item_deadline_seconds", &r.faults.item_deadline_seconds));
    DUET_RETURN_IF_ERROR(Read(f, "item_deadline_per_row_seconds",
                              &r.faults.item_deadline_per_row_seconds));
    DUET_RETURN_IF_ERROR(Read(f, "quarantine_after", &r.faults.quarantine_after));
    DUET_RETURN_IF_ERROR(
        Read(f, "quarantine_cooldown_seconds", &r.faults.quarantine_cooldown_seconds));
    DUET_RETURN_IF_ERROR(Read(f, "poison_workers", &r.faults.poison_workers));
    DUET_RETURN_IF_ERROR(Read(f, "sync_grace_seconds", &r.faults.sync_grace_seconds));
  }
  DUET_RETURN_IF_ERROR(Read(root, "frozen_scorer", &r.frozen_scorer));
  if (root["self_reward"]) {
    const YAML::Node s = root["self_reward"];
    DUET_RETURN_IF_ERROR(CheckKeys(s, "self_reward", {"image", "caption"}));
    for (auto [key, kind] : {std::pair{"image", &r.self_reward.image},
                             std::pair{"caption", &r.self_reward.caption}}) {
      std::string name(RewardKindName(*kind));
      DUET_RETURN_IF_ERROR(Read(s, key, &name));
      absl::StatusOr<RewardKind> k = ParseRewardKind(name);
      if (!k.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("recipe: self_reward.", key, ": ", k.status().message()));
      }
      *kind = *k;
    }
  }
  if (root["reward"]) {
    const YAML::Node m = root["reward"];
    DUET_RETURN_IF_ERROR(CheckKeys(
        m, "reward",
        {"self", "external", "external_address", "timeout_ms", "auth_token_file"}));
    DUET_RETURN_IF_ERROR(Read(m, "self", &r.reward.self));
    DUET_RETURN_IF_ERROR(Read(m, "external", &r.reward.external));
    DUET_RETURN_IF_ERROR(Read(m, "external_address", &r.reward.external_address));
    DUET_RETURN_IF_ERROR(Read(m, "timeout_ms", &r.reward.timeout_ms));
    DUET_RETURN_IF_ERROR(Read(m, "auth_token_file", &r.reward.auth_token_file));
  }
  DUET_RETURN_IF_ERROR(Read(root, "seed", &r.rl.seed));
  DUET_RETURN_IF_ERROR(Read(root, "collective", &r.collective));
  DUET_RETURN_IF_ERROR(Read(root, "broadcast", &r.broadcast));
  DUET_RETURN_IF_ERROR(Read(root, "wire_dtype", &r.wire_dtype));
  if (root["workers"]) {
    DUET_RETURN_IF_ERROR(CheckKeys(root["workers"], "workers", {"rollout", "scorer"}));
    DUET_RETURN_IF_ERROR(Read(root["workers"], "rollout", &r.rollout_workers));
    DUET_RETURN_IF_ERROR(Read(root["workers"], "scorer", &r.scorer_workers));
  }
  DUET_RETURN_IF_ERROR(r.Validate());
  return r;
}

absl::StatusOr<Recipe> LoadRecipe(const std::string& path,
                                  const std::vector<std::string>& settings) {
  DUET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  // An empty file is a mistake (a truncated copy, a wrong path), not a wish for the
  // built-in 150-step default.
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": the recipe file is empty (configs/recipes/default.yaml spells "
                     "out every key)"));
  }
  auto r = ParseRecipe(text, settings);
  if (!r.ok())
    return absl::Status(r.status().code(),
                        absl::StrCat(path, ": ", r.status().message()));
  return r;
}

std::string RecipeToYaml(const Recipe& r, bool every_key) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "model" << YAML::Value << r.model;
  e << YAML::Key << "data" << YAML::Value << r.data;
  e << YAML::Key << "out" << YAML::Value << r.out;
  e << YAML::Key << "steps" << YAML::Value << r.steps;
  e << YAML::Key << "algorithm" << YAML::Value
    << (r.optimizer.algorithm == RlAlgorithm::kSimpo ? "simpo" : "grpo");
  e << YAML::Key << "directions" << YAML::Value << r.directions;
  e << YAML::Key << "generation_inputs" << YAML::Value << r.rl.generation_inputs;
  e << YAML::Key << "understanding_inputs" << YAML::Value << r.rl.understanding_inputs;
  e << YAML::Key << "k" << YAML::Value << r.rl.k;
  e << YAML::Key << "lr" << YAML::Value << r.optimizer.lr;
  e << YAML::Key << "grad_clip" << YAML::Value << r.optimizer.grad_clip;
  e << YAML::Key << "micro_batch" << YAML::Value << r.optimizer.micro_batch;
  e << YAML::Key << "grpo" << YAML::Value << YAML::BeginMap << YAML::Key << "clip_eps"
    << YAML::Value << r.optimizer.grpo.clip_eps << YAML::Key << "kl_coef" << YAML::Value
    << r.optimizer.grpo.kl_coef << YAML::Key << "understanding_weight" << YAML::Value
    << r.optimizer.grpo.understanding_weight << YAML::EndMap;
  e << YAML::Key << "simpo" << YAML::Value << YAML::BeginMap << YAML::Key << "beta"
    << YAML::Value << r.optimizer.simpo.beta << YAML::Key << "gamma" << YAML::Value
    << r.optimizer.simpo.gamma << YAML::EndMap;
  e << YAML::Key << "sampling" << YAML::Value << YAML::BeginMap << YAML::Key
    << "temperature" << YAML::Value << r.rl.image_sampling.temperature << YAML::Key
    << "top_k" << YAML::Value << r.rl.image_sampling.top_k << YAML::Key << "top_p"
    << YAML::Value << r.rl.image_sampling.top_p << YAML::Key << "cfg_scale" << YAML::Value
    << r.rl.cfg_scale.value_or(0.0) << YAML::EndMap;
  e << YAML::Key << "sync_every" << YAML::Value << r.sync_every;
  e << YAML::Key << "max_lag" << YAML::Value << r.max_lag;
  e << YAML::Key << "bucket_mb" << YAML::Value << r.bucket_mb;
  e << YAML::Key << "checkpoint_every" << YAML::Value << r.checkpoint_every;
  e << YAML::Key << "lease_seconds" << YAML::Value << r.lease_seconds;
  e << YAML::Key << "frozen_scorer" << YAML::Value << r.frozen_scorer;
  e << YAML::Key << "self_reward" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "image" << YAML::Value
    << std::string(RewardKindName(r.self_reward.image)) << YAML::Key << "caption"
    << YAML::Value << std::string(RewardKindName(r.self_reward.caption)) << YAML::EndMap;
  if (every_key || !(r.reward == RewardMix())) {
    e << YAML::Key << "reward" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
      << "self" << YAML::Value << r.reward.self << YAML::Key << "external" << YAML::Value
      << r.reward.external << YAML::Key << "external_address" << YAML::Value
      << r.reward.external_address << YAML::Key << "timeout_ms" << YAML::Value
      << r.reward.timeout_ms << YAML::Key << "auth_token_file" << YAML::Value
      << r.reward.auth_token_file << YAML::EndMap;
  }
  if (every_key || !(r.faults == FaultRecipe())) {
    e << YAML::Key << "faults" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
      << "item_deadline_seconds" << YAML::Value << r.faults.item_deadline_seconds
      << YAML::Key << "item_deadline_per_row_seconds" << YAML::Value
      << r.faults.item_deadline_per_row_seconds << YAML::Key << "quarantine_after"
      << YAML::Value << r.faults.quarantine_after << YAML::Key
      << "quarantine_cooldown_seconds" << YAML::Value
      << r.faults.quarantine_cooldown_seconds << YAML::Key << "poison_workers"
      << YAML::Value << r.faults.poison_workers << YAML::Key << "sync_grace_seconds"
      << YAML::Value << r.faults.sync_grace_seconds << YAML::EndMap;
  }
  e << YAML::Key << "seed" << YAML::Value << r.rl.seed;
  e << YAML::Key << "collective" << YAML::Value << r.collective;
  e << YAML::Key << "broadcast" << YAML::Value << r.broadcast;
  e << YAML::Key << "wire_dtype" << YAML::Value << r.wire_dtype;
  e << YAML::Key << "workers" << YAML::Value << YAML::BeginMap << YAML::Key << "rollout"
    << YAML::Value << r.rollout_workers << YAML::Key << "scorer" << YAML::Value
    << r.scorer_workers << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

namespace {

void KeyDefaults(const YAML::Node& node, const std::string& prefix,
                 std::vector<std::string>* out) {
  for (const auto& kv : node) {
    const std::string key = prefix + kv.first.as<std::string>();
    if (kv.second.IsMap()) {
      KeyDefaults(kv.second, key + ".", out);
    } else {
      YAML::Emitter e;
      e << YAML::Flow << kv.second;
      std::string value = e.c_str();
      // A number as its shortest spelling that reads back as the same double (yaml-cpp
      // writes 17 digits: 0.10000000000000001).
      double d = 0;
      if (absl::SimpleAtod(value, &d) &&
          value.find_first_of(".eE") != std::string::npos) {
        for (int digits = 1; digits <= 17; ++digits) {
          const std::string shorter = absl::StrFormat("%.*g", digits, d);
          double back = 0;
          if (absl::SimpleAtod(shorter, &back) && back == d) {
            value = shorter;
            break;
          }
        }
      }
      out->push_back(absl::StrCat(key, "=", value));
    }
  }
}

}  // namespace

std::vector<std::string> RecipeKeyDefaults() {
  std::vector<std::string> out;
  KeyDefaults(YAML::Load(RecipeToYaml(Recipe(), /*every_key=*/true)), "", &out);
  return out;
}

}  // namespace duet
