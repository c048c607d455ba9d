#include "learner/pretrain.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/model/generation.h"
#include "common/world/bundle.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"
#include "learner/adamw.h"
#include "learner/checkpoint.h"

namespace duet {
namespace {

struct Example {
  std::vector<int64_t> caption;  // text ids
  std::vector<int64_t> image;    // image token ids
};

// A training row: tokens and the index where the loss starts (everything from there on,
// up to the row's length, is a target).
struct Row {
  std::vector<int64_t> tokens;
  int64_t target_begin = 0;
};

Row UnderstandingRow(const TokenLayout& layout, const Example& ex) {
  Row r;
  r.tokens = DescribePrompt(layout, ex.image);
  r.target_begin = static_cast<int64_t>(r.tokens.size());
  r.tokens.insert(r.tokens.end(), ex.caption.begin(), ex.caption.end());
  r.tokens.push_back(layout.eos);
  return r;
}

Row GenerationRow(const TokenLayout& layout, const Example& ex, bool drop_caption) {
  Row r;
  r.tokens = drop_caption ? UnconditionalDrawPrompt(layout, ex.caption.size())
                          : DrawPrompt(layout, ex.caption);
  r.target_begin = static_cast<int64_t>(r.tokens.size());
  r.tokens.insert(r.tokens.end(), ex.image.begin(), ex.image.end());
  r.tokens.push_back(layout.eoi);
  return r;
}

double LearningRate(const PretrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / o.warmup_steps;
  const double progress = static_cast<double>(step - o.warmup_steps) /
                          std::max<int64_t>(1, o.steps - o.warmup_steps);
  const double cosine = 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress)));
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * cosine);
}

absl::StatusOr<std::vector<Example>> LoadExamples(const std::string& data_dir,
                                                  const world::ModelBundle& bundle) {
  DUET_ASSIGN_OR_RETURN(auto pairs, world::ReadPairs(JoinPath(data_dir, "sft.jsonl")));
  if (pairs.empty()) return absl::FailedPreconditionError("sft.jsonl holds no pairs");
  std::vector<Example> out;
  out.reserve(pairs.size());
  const int px = bundle.world.image_px();
  for (const auto& p : pairs) {
    Example ex;
    DUET_ASSIGN_OR_RETURN(world::Image image, world::ReadPng(p.image, px, px));
    DUET_ASSIGN_OR_RETURN(ex.image, bundle.EncodeImage(image));
    DUET_ASSIGN_OR_RETURN(ex.caption, bundle.EncodeCaption(p.caption));
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

absl::Status PretrainOptions::Validate() const {
  if (data_dir.empty() || out_dir.empty())
    return absl::InvalidArgumentError("pretrain: --data and --out are required");
  if (steps <= 0 || batch_size <= 0)
    return absl::InvalidArgumentError("pretrain: steps and batch_size must be positive");
  if (!(lr > 0) || !std::isfinite(lr))
    return absl::InvalidArgumentError("pretrain: lr must be positive");
  if (understanding_fraction < 0 || understanding_fraction > 1) {
    return absl::InvalidArgumentError(
        "pretrain: understanding_fraction must be in [0, 1]");
  }
  if (caption_dropout < 0 || caption_dropout >= 1) {
    return absl::InvalidArgumentError("pretrain: caption_dropout must be in [0, 1)");
  }
  if (checkpoint_every <= 0)
    return absl::InvalidArgumentError("pretrain: checkpoint_every must be positive");
  return absl::OkStatus();
}

absl::Status Pretrain(const PretrainOptions& o) {
  DUET_RETURN_IF_ERROR(o.Validate());
  DUET_RETURN_IF_ERROR(MakeDirs(o.out_dir));
  // The bundle: a fresh model of the preset's shape with the data's tokenizers.
  DUET_ASSIGN_OR_RETURN(world::ImageTokenizer image_tokenizer,
                        world::ImageTokenizer::Load(
                            JoinPath(o.data_dir, "tokenizer/codebook.safetensors")));
  world::WorldConfig world = image_tokenizer.config();
  TokenLayout layout = world::LayoutForCodebook(image_tokenizer.codebook_size(), world);
  DUET_ASSIGN_OR_RETURN(ModelConfig config,
                        ModelConfig::Preset(o.preset, layout.vocab_size(),
                                            world::MaxSequenceLength(layout)));
  DUET_ASSIGN_OR_RETURN(Transformer model, Transformer::Create(config, o.seed));
  world::ModelBundle bundle{std::move(model), layout, world, world::TextTokenizer(layout),
                            std::move(image_tokenizer)};
  const auto t_load = std::chrono::steady_clock::now();
  DUET_ASSIGN_OR_RETURN(std::vector<Example> examples, LoadExamples(o.data_dir, bundle));
  LOG(INFO)
      << "pretrain: encoded " << examples.size() << " pairs in "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count()
      << " s";

  Transformer& m = bundle.model;
  m.SetRequiresGrad(true);
  AdamW optimizer(m.parameters(),
                  AdamWOptions{.lr = o.lr, .weight_decay = o.weight_decay});
  const std::string ckpt_root = JoinPath(o.out_dir, "checkpoints");
  int64_t start_step = 0;
  DUET_ASSIGN_OR_RETURN(auto restored, RestoreLatestCheckpoint(ckpt_root, m));
  if (restored.has_value()) {
    DUET_RETURN_IF_ERROR(optimizer.LoadState(restored->optimizer));
    start_step = restored->step;
    LOG(INFO) << "pretrain: resumed from " << restored->dir << " at step " << start_step;
  }

  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_seen = 0;
  for (int64_t step = start_step; step < o.steps; ++step) {
    // The batch of step s depends only on (seed, s).
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
    std::uniform_int_distribution<size_t> pick(0, examples.size() - 1);
    std::uniform_real_distribution<double> coin(0, 1);
    const int64_t n_und = std::llround(o.batch_size * o.understanding_fraction);
    std::vector<Row> rows;
    for (int64_t i = 0; i < o.batch_size; ++i) {
      const Example& ex = examples[pick(rng)];
      rows.push_back(i < n_und
                         ? UnderstandingRow(layout, ex)
                         : GenerationRow(layout, ex, coin(rng) < o.caption_dropout));
    }
    size_t len = 0;
    for (const Row& r : rows) len = std::max(len, r.tokens.size());
    const int64_t b = o.batch_size, t = static_cast<int64_t>(len);
    torch::Tensor tokens = torch::full({b, t}, layout.pad, torch::kInt64);
    torch::Tensor weight = torch::zeros({b, t - 1}, torch::kFloat32);
    {
      auto ta = tokens.accessor<int64_t, 2>();
      auto wa = weight.accessor<float, 2>();
      for (int64_t i = 0; i < b; ++i) {
        const Row& r = rows[i];
        for (size_t j = 0; j < r.tokens.size(); ++j) ta[i][j] = r.tokens[j];
        for (size_t j = r.target_begin; j < r.tokens.size(); ++j) wa[i][j - 1] = 1.0f;
      }
    }
    torch::Tensor logits = m.ForwardUnchecked(tokens, torch::Tensor());
    torch::Tensor nll =
        torch::nn::functional::cross_entropy(
            logits.narrow(1, 0, t - 1).reshape({-1, logits.size(2)}),
            tokens.narrow(1, 1, t - 1).reshape({-1}),
            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
            .view({b, t - 1});
    torch::Tensor row_nll = (nll * weight).sum(1);
    torch::Tensor row_count = weight.sum(1);
    torch::Tensor loss = row_nll.sum() / row_count.sum();
    optimizer.ZeroGrad();
    loss.backward();
    optimizer.ClipGradNorm(o.grad_clip);
    const double lr = LearningRate(o, step);
    optimizer.Step(lr);
    tokens_seen += b * t;

    const int64_t done = step + 1;
    if (o.on_progress) {
      PretrainProgress p;
      p.step = done;
      p.total_steps = o.steps;
      p.loss = loss.item<double>();
      torch::NoGradGuard ng;
      p.understanding_loss =
          n_und > 0
              ? (row_nll.narrow(0, 0, n_und).sum() / row_count.narrow(0, 0, n_und).sum())
                    .item<double>()
              : 0;
      p.generation_loss = n_und < b ? (row_nll.narrow(0, n_und, b - n_und).sum() /
                                       row_count.narrow(0, n_und, b - n_und).sum())
                                          .item<double>()
                                    : 0;
      p.elapsed_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      p.tokens_per_second = tokens_seen / std::max(1e-9, p.elapsed_seconds);
      p.lr = lr;
      o.on_progress(p);
    }
    if (done % o.checkpoint_every == 0 || done == o.steps) {
      nlohmann::json state = {{"step", done}, {"seed", o.seed}, {"preset", o.preset}};
      DUET_RETURN_IF_ERROR(WriteCheckpoint(ckpt_root, done, m, optimizer, state.dump(2),
                                           o.keep_checkpoints));
    }
  }
  m.SetRequiresGrad(false);
  return world::SaveBundle(JoinPath(o.out_dir, "model"), bundle);
}

}  // namespace duet
