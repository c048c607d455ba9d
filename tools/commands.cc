#include "tools/commands.h"

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/model/generation.h"
#include "common/world/bundle.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"
#include "learner/pretrain.h"
#include "tools/progress.h"
#include "tools/shapes_eval.h"

// Shared.
// One LibTorch intra-op thread by default: GEMMs already run on OpenBLAS's own thread
// pool, and OpenMP threads on top of it oversubscribe the cores (measured 10x slower
// pretraining with --threads=2 on a 2-core machine; see docs/benchmarks.md).
DEFINE_int32(threads, 1, "intra-op threads for LibTorch (0 = all cores)");
DEFINE_uint64(seed, 1, "random seed");
DEFINE_string(out, "",
              "output folder (make-data, pretrain, local), PNG file (sample), or a "
              "running duet local's folder (pool)");
DEFINE_string(data, "out/data", "data folder written by `duet world make-data`");
DEFINE_int32(hard_per_category, 200,
             "world make-hard-split: images per category (position, mixed) of the hard "
             "understanding split");
DEFINE_string(model, "out/base/model",
              "model folder (config.json, model.safetensors, ...)");

// world make-data.
DEFINE_int32(sft_pairs, 20000,
             "make-data: paired image-caption examples for pretraining");
DEFINE_int32(rl_prompts, 2000, "make-data: text-only RL prompts (generation)");
DEFINE_int32(rl_images, 2000, "make-data: image-only RL inputs (understanding)");
DEFINE_int32(eval_per_category, 100,
             "make-data: held-out items per category and direction");
DEFINE_int32(codebook_size, 512, "make-data: VQ codebook size (image vocabulary)");
DEFINE_double(mixed_fraction, 0.2,
              "make-data: share of SFT pairs from the training-only mixed family");

// pretrain.
DEFINE_string(preset, "tiny", "pretrain: model preset (tiny, small, base)");
DEFINE_int64(steps, 1200, "pretrain: optimizer steps");
DEFINE_int64(batch_size, 64, "pretrain: sequences per step");
DEFINE_double(lr, 3e-3, "pretrain: peak learning rate (warmup then cosine)");
DEFINE_double(understanding_fraction, 0.7,
              "pretrain: share of image->text rows per batch");
DEFINE_double(caption_dropout, 0.1,
              "pretrain: share of generation rows with the caption dropped (CFG)");
DEFINE_int64(checkpoint_every, 400, "pretrain: steps between checkpoints");

// eval and sample.
DEFINE_string(report_dir, "",
              "eval: folder for report.json and gallery.png (default <model>/../eval)");
DEFINE_double(cfg_scale, 1.5, "eval/sample: classifier-free guidance scale for images");
DEFINE_double(temperature, 1.0, "eval/sample: image sampling temperature");
DEFINE_int32(top_k, 0, "eval/sample: image sampling top-k (0 = off)");
DEFINE_double(top_p, 1.0, "eval/sample: image sampling top-p (1 = off)");
DEFINE_double(caption_temperature, 0.0,
              "eval/sample: caption sampling temperature (0 = greedy)");
DEFINE_int32(limit, 0, "eval: items per category and direction (0 = all)");
DEFINE_int64(eval_seeds, 1,
             "eval: evaluation seeds seed..seed+N-1; figures are means over them, with "
             "their spread and "
             "95% interval when N > 1");
DEFINE_string(prompt, "", "sample: caption to draw");
DEFINE_string(image, "", "sample: PNG to describe");

// dev dump-logits.
DEFINE_string(out_dir, "", "dev dump-logits: folder for the model, tokens and logits");
// dev dump-logits also reads --model: when given, that model is dumped instead of a
// random one (see RunDumpLogits).

namespace duet {

void SetLibTorchThreads() {
  const int n = FLAGS_threads > 0 ? FLAGS_threads
                                  : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(std::max(1, n));
}

EvalOptions EvalOptionsFromFlags(const std::string& data_dir) {
  EvalOptions o;
  o.data_dir = data_dir;
  o.limit_per_category = FLAGS_limit;
  o.images.cfg_scale = FLAGS_cfg_scale;
  o.images.sampling.temperature = FLAGS_temperature;
  o.images.sampling.top_k = FLAGS_top_k;
  o.images.sampling.top_p = FLAGS_top_p;
  o.captions.temperature = FLAGS_caption_temperature;
  o.seed = FLAGS_seed;
  o.eval_seeds = FLAGS_eval_seeds;
  return o;
}

int RunCommand(const char* name, const std::function<absl::Status()>& body) {
  SetLibTorchThreads();
  const absl::Status s = body();
  if (!s.ok()) {
    std::fprintf(stderr, "duet %s: %s\n", name, s.ToString().c_str());
    return 1;
  }
  return 0;
}

namespace {

int Fail(const char* cmd, const absl::Status& s) {
  std::fprintf(stderr, "duet %s: %s\n", cmd, s.ToString().c_str());
  return 1;
}

// Writes `model` to <out_dir>/model, 3 rows of random tokens (a function of seed) to
// tokens.json and their logits to logits.f32 (+ .json with the shape).
int DumpLogits(const Transformer& model, const std::string& out_dir, uint64_t seed) {
  const ModelConfig& c = model.config();
  absl::Status s = model.Save(JoinPath(out_dir, "model"));
  if (!s.ok()) return Fail("dev dump-logits", s);
  torch::manual_seed(seed + 1);
  const int64_t length = std::min<int64_t>(48, c.max_position_embeddings);
  torch::Tensor tokens = torch::randint(0, c.vocab_size, {3, length}, torch::kInt64);
  auto logits = model.Forward(tokens);
  if (!logits.ok()) return Fail("dev dump-logits", logits.status());
  nlohmann::json tj;
  tj["tokens"] = nlohmann::json::array();
  auto ta = tokens.accessor<int64_t, 2>();
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    std::vector<int64_t> row(ta[i].data(), ta[i].data() + tokens.size(1));
    tj["tokens"].push_back(row);
  }
  torch::Tensor l = logits->contiguous();
  std::string bytes(static_cast<const char*>(l.data_ptr()), l.numel() * sizeof(float));
  for (const auto& [path, text] : std::vector<std::pair<std::string, std::string>>{
           {JoinPath(out_dir, "tokens.json"), tj.dump()},
           {JoinPath(out_dir, "logits.f32"), bytes},
           {JoinPath(out_dir, "logits.f32.json"),
            nlohmann::json({{"shape", l.sizes().vec()}}).dump()}}) {
    s = WriteFileAtomically(path, text);
    if (!s.ok()) return Fail("dev dump-logits", s);
  }
  std::printf("wrote %s\n", out_dir.c_str());
  return 0;
}

}  // namespace

int RunMakeData() {
  if (FLAGS_out.empty()) FLAGS_out = "out/data";
  SetLibTorchThreads();
  world::MakeDataOptions o;
  o.out_dir = FLAGS_out;
  o.sft_pairs = FLAGS_sft_pairs;
  o.rl_prompts = FLAGS_rl_prompts;
  o.rl_images = FLAGS_rl_images;
  o.eval_per_category = FLAGS_eval_per_category;
  o.codebook_size = FLAGS_codebook_size;
  o.mixed_fraction = FLAGS_mixed_fraction;
  o.seed = FLAGS_seed;
  absl::Status s = world::MakeData(o);
  if (!s.ok()) return Fail("world make-data", s);
  std::printf("wrote the Shapes world data to %s\n", FLAGS_out.c_str());
  return 0;
}

int RunMakeHardSplit() {
  SetLibTorchThreads();
  world::HardSplitOptions o;
  o.per_category = FLAGS_hard_per_category;
  o.seed = FLAGS_seed;
  absl::Status s = world::MakeHardUnderstandingSplit(FLAGS_data, o);
  if (!s.ok()) return Fail("world make-hard-split", s);
  std::printf("wrote the hard understanding split to %s/%s\n", FLAGS_data.c_str(),
              world::kEvalUndHardFile);
  return 0;
}

int RunPretrain() {
  if (FLAGS_out.empty()) FLAGS_out = "out/base";
  SetLibTorchThreads();
  PretrainOptions o;
  o.data_dir = FLAGS_data;
  o.out_dir = FLAGS_out;
  o.preset = FLAGS_preset;
  o.steps = FLAGS_steps;
  o.batch_size = FLAGS_batch_size;
  o.lr = FLAGS_lr;
  o.understanding_fraction = FLAGS_understanding_fraction;
  o.caption_dropout = FLAGS_caption_dropout;
  o.checkpoint_every = FLAGS_checkpoint_every;
  o.seed = FLAGS_seed;
  ProgressBar bar("pretrain", o.steps, /*log_every=*/50);
  o.on_progress = [&bar](const PretrainProgress& p) {
    bar.Update(p.step,
               absl::StrFormat("loss %.3f (und %.3f, gen %.3f) lr %.1e %.0f tok/s",
                               p.loss, p.understanding_loss, p.generation_loss, p.lr,
                               p.tokens_per_second),
               p.elapsed_seconds);
  };
  absl::Status s = Pretrain(o);
  if (!s.ok()) return Fail("pretrain", s);
  std::printf("wrote the base model to %s/model\n", FLAGS_out.c_str());
  return 0;
}

int RunEval() {
  SetLibTorchThreads();
  auto bundle = world::LoadBundle(FLAGS_model);
  if (!bundle.ok()) return Fail("eval", bundle.status());
  EvalOptions o = EvalOptionsFromFlags(FLAGS_data);
  o.report_dir =
      FLAGS_report_dir.empty() ? JoinPath(FLAGS_model, "../eval") : FLAGS_report_dir;
  auto result = RunShapesEval(*bundle, o);
  if (!result.ok()) return Fail("eval", result.status());
  std::printf("%s\nreport: %s\ngallery: %s\n", result->table.c_str(),
              result->report_path.c_str(), result->gallery_path.c_str());
  return 0;
}

int RunSample() {
  SetLibTorchThreads();
  auto bundle = world::LoadBundle(FLAGS_model);
  if (!bundle.ok()) return Fail("sample", bundle.status());
  if (FLAGS_prompt.empty() == FLAGS_image.empty()) {
    std::fprintf(
        stderr,
        "duet sample: give exactly one of --prompt (draw) or --image (describe)\n");
    return 2;
  }
  if (!FLAGS_prompt.empty()) {
    if (FLAGS_out.empty()) FLAGS_out = "sample.png";
    auto ids = bundle->EncodeCaption(FLAGS_prompt);
    if (!ids.ok()) return Fail("sample", ids.status());
    ImageGenerationOptions opts;
    opts.cfg_scale = FLAGS_cfg_scale;
    opts.sampling.temperature = FLAGS_temperature;
    opts.sampling.top_k = FLAGS_top_k;
    opts.sampling.top_p = FLAGS_top_p;
    auto out = GenerateImages(bundle->model, bundle->layout, {*ids}, {FLAGS_seed}, opts);
    if (!out.ok()) return Fail("sample", out.status());
    auto image = bundle->DecodeImage(out->tokens[0]);
    if (!image.ok()) return Fail("sample", image.status());
    absl::Status s = world::WritePng(FLAGS_out, *image);
    if (!s.ok()) return Fail("sample", s);
    std::printf("wrote %s\n", FLAGS_out.c_str());
    return 0;
  }
  const int px = bundle->world.image_px();
  auto image = world::ReadPng(FLAGS_image, px, px);
  if (!image.ok()) return Fail("sample", image.status());
  auto ids = bundle->EncodeImage(*image);
  if (!ids.ok()) return Fail("sample", ids.status());
  SamplingParams sp;
  sp.temperature = FLAGS_caption_temperature;
  auto out = GenerateCaptions(bundle->model, bundle->layout, {*ids}, {FLAGS_seed}, sp);
  if (!out.ok()) return Fail("sample", out.status());
  auto text = bundle->DecodeCaption(out->tokens[0]);
  if (!text.ok()) return Fail("sample", text.status());
  std::printf("%s\n", text->c_str());
  return 0;
}

int RunDumpLogits() {
  if (FLAGS_out_dir.empty()) {
    std::fprintf(stderr, "duet dev dump-logits: --out_dir is required\n");
    return 2;
  }
  SetLibTorchThreads();
  // --model given: dump that model (a copy of it goes to <out_dir>/model, so the
  // reference reads exactly what was run).
  if (!gflags::GetCommandLineFlagInfoOrDie("model").is_default) {
    auto given = Transformer::Load(FLAGS_model);
    if (!given.ok()) return Fail("dev dump-logits", given.status());
    return DumpLogits(*given, FLAGS_out_dir, FLAGS_seed);
  }
  // Otherwise a fixed random model, a function of --seed: a small model with
  // grouped-query heads, untied embeddings, non-default eps/theta, so every convention
  // the reference must agree on is exercised.
  ModelConfig c;
  c.vocab_size = 544;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 500.0;
  auto model = Transformer::Create(c, FLAGS_seed);
  if (!model.ok()) return Fail("dev dump-logits", model.status());
  {
    // Random init is too tame to expose convention mistakes (logits near zero): scale up.
    torch::NoGradGuard ng;
    torch::manual_seed(FLAGS_seed);
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  return DumpLogits(*model, FLAGS_out_dir, FLAGS_seed);
}

std::vector<std::string>& RecipeSettings() {
  static auto* settings = new std::vector<std::string>();
  return *settings;
}

}  // namespace duet
