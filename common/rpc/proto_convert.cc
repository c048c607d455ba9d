#include "common/rpc/proto_convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace duet {

void ToProto(const RunRewards& rewards, v1::RewardConfig* out) {
  out->set_image_reward(std::string(RewardKindName(rewards.kinds.image)));
  out->set_caption_reward(std::string(RewardKindName(rewards.kinds.caption)));
  out->set_self_weight(rewards.mix.self);
  out->set_external_weight(rewards.mix.external);
  out->set_external_address(rewards.mix.external_address);
  out->set_external_timeout_ms(rewards.mix.timeout_ms);
  out->set_external_auth_token_file(rewards.mix.auth_token_file);
}

absl::StatusOr<RunRewards> FromProto(const v1::RewardConfig& config) {
  RunRewards out;
  absl::StatusOr<RewardKind> image = ParseRewardKind(config.image_reward());
  if (!image.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("rewards.image_reward: ", image.status().message()));
  absl::StatusOr<RewardKind> caption = ParseRewardKind(config.caption_reward());
  if (!caption.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rewards.caption_reward: ", caption.status().message()));
  }
  out.kinds = {*image, *caption};
  out.mix.self = config.self_weight();
  out.mix.external = config.external_weight();
  out.mix.external_address = config.external_address();
  out.mix.timeout_ms = config.external_timeout_ms();
  out.mix.auth_token_file = config.external_auth_token_file();
  if (absl::Status s = ValidateRewardMix(out.mix); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("rewards: ", s.message()));
  }
  return out;
}
namespace {

std::vector<int64_t> Ids(const v1::TokenSeq& seq) {
  return {seq.ids().begin(), seq.ids().end()};
}

void SetIds(const std::vector<int64_t>& ids, v1::TokenSeq* seq) {
  seq->mutable_ids()->Assign(ids.begin(), ids.end());
}

absl::Status CheckVocab(const v1::TokenSeq& seq, const TokenLayout& layout,
                        const std::string& field) {
  if (seq.ids_size() == 0) return absl::InvalidArgumentError(field + ": empty");
  if (seq.ids_size() > layout.image_tokens + layout.max_caption_tokens + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", seq.ids_size(), " tokens is too long"));
  }
  for (int64_t id : seq.ids()) {
    if (id < 0 || id >= layout.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": token id ", id,
                                                     " outside the vocabulary [0, ",
                                                     layout.vocab_size(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

v1::TaskKind ToProto(Task task) {
  return task == Task::kGeneration ? v1::TASK_GENERATION : v1::TASK_UNDERSTANDING;
}

absl::StatusOr<Task> FromProto(v1::TaskKind kind) {
  if (kind == v1::TASK_GENERATION) return Task::kGeneration;
  if (kind == v1::TASK_UNDERSTANDING) return Task::kUnderstanding;
  return absl::InvalidArgumentError(
      "task: must be TASK_GENERATION or TASK_UNDERSTANDING");
}

void ToProto(const RolloutRequest& r, v1::RolloutWork* out) {
  out->set_task(ToProto(r.task));
  for (const auto& in : r.inputs) SetIds(in, out->add_inputs());
  out->set_k(r.k);
  out->mutable_sampling()->set_temperature(r.sampling.temperature);
  out->mutable_sampling()->set_top_k(r.sampling.top_k);
  out->mutable_sampling()->set_top_p(r.sampling.top_p);
  out->set_use_cfg(r.cfg_scale.has_value());
  out->set_cfg_scale(r.cfg_scale.value_or(0.0));
  out->set_seed(r.seed);
  out->set_input_offset(r.input_offset);
}

absl::StatusOr<RolloutRequest> FromProto(const v1::RolloutWork& w,
                                         const TokenLayout& layout) {
  RolloutRequest r;
  DUET_ASSIGN_OR_RETURN(r.task, FromProto(w.task()));
  if (w.inputs_size() == 0) return absl::InvalidArgumentError("inputs: empty");
  if (w.inputs_size() > 4096) return absl::InvalidArgumentError("inputs: more than 4096");
  for (int i = 0; i < w.inputs_size(); ++i) {
    DUET_RETURN_IF_ERROR(
        CheckVocab(w.inputs(i), layout, absl::StrCat("inputs[", i, "]")));
    r.inputs.push_back(Ids(w.inputs(i)));
  }
  if (w.k() < 1 || w.k() > 64)
    return absl::InvalidArgumentError(absl::StrCat("k: must be in [1, 64], got ", w.k()));
  r.k = w.k();
  r.sampling.temperature = w.sampling().temperature();
  r.sampling.top_k = w.sampling().top_k();
  r.sampling.top_p = w.sampling().top_p() == 0 ? 1.0 : w.sampling().top_p();
  DUET_RETURN_IF_ERROR(r.sampling.Validate());
  if (w.use_cfg()) {
    if (!std::isfinite(w.cfg_scale()))
      return absl::InvalidArgumentError("cfg_scale: not finite");
    r.cfg_scale = w.cfg_scale();
  }
  r.seed = w.seed();
  if (w.input_offset() < 0) return absl::InvalidArgumentError("input_offset: negative");
  r.input_offset = w.input_offset();
  return r;
}

void ToProto(const std::vector<Group>& groups, v1::RolloutResult* out) {
  for (const Group& g : groups) {
    v1::GroupResult* gr = out->add_groups();
    for (const Sample& s : g.samples) {
      v1::SampleResult* sr = gr->add_samples();
      SetIds(s.output, sr->mutable_output());
      sr->mutable_policy_logprobs()->Assign(s.policy_logprobs.begin(),
                                            s.policy_logprobs.end());
    }
  }
}

absl::StatusOr<std::vector<Group>> FromProto(const v1::RolloutResult& result,
                                             const RolloutRequest& req,
                                             int64_t policy_version) {
  if (result.groups_size() != static_cast<int>(req.inputs.size())) {
    return absl::InvalidArgumentError(absl::StrCat("rollout result has ",
                                                   result.groups_size(), " groups for ",
                                                   req.inputs.size(), " inputs"));
  }
  std::vector<Group> out(req.inputs.size());
  for (size_t i = 0; i < req.inputs.size(); ++i) {
    out[i].task = req.task;
    out[i].input = req.inputs[i];
    const auto& gr = result.groups(static_cast<int>(i));
    if (gr.samples_size() != req.k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "group ", i, " has ", gr.samples_size(), " samples, expected k = ", req.k));
    }
    for (const auto& sr : gr.samples()) {
      if (sr.output().ids_size() == 0 ||
          sr.policy_logprobs_size() != sr.output().ids_size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "group ", i, ": a sample has ", sr.output().ids_size(), " tokens and ",
            sr.policy_logprobs_size(), " log-probs (one per token required)"));
      }
      Sample s;
      s.output = Ids(sr.output());
      s.policy_logprobs.assign(sr.policy_logprobs().begin(), sr.policy_logprobs().end());
      s.policy_version = policy_version;
      out[i].samples.push_back(std::move(s));
    }
  }
  return out;
}

void ToProto(const std::vector<RewardQuery>& queries, v1::ScoreWork* out) {
  for (const RewardQuery& q : queries) {
    v1::ScoreQuery* sq = out->add_queries();
    sq->set_task(ToProto(q.task));
    SetIds(q.input, sq->mutable_input());
    SetIds(q.output, sq->mutable_output());
  }
}

absl::StatusOr<std::vector<RewardQuery>> FromProto(const v1::ScoreWork& w,
                                                   const TokenLayout& layout) {
  if (w.queries_size() == 0) return absl::InvalidArgumentError("queries: empty");
  if (w.queries_size() > 16384)
    return absl::InvalidArgumentError("queries: more than 16384");
  std::vector<RewardQuery> out;
  for (int i = 0; i < w.queries_size(); ++i) {
    const auto& q = w.queries(i);
    RewardQuery r;
    DUET_ASSIGN_OR_RETURN(r.task, FromProto(q.task()));
    DUET_RETURN_IF_ERROR(
        CheckVocab(q.input(), layout, absl::StrCat("queries[", i, "].input")));
    DUET_RETURN_IF_ERROR(
        CheckVocab(q.output(), layout, absl::StrCat("queries[", i, "].output")));
    r.input = Ids(q.input());
    r.output = Ids(q.output());
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace duet
