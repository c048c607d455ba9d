#include "tools/shapes_eval.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/eval/gallery.h"
#include "common/eval/oracle.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"
#include "tools/agreement.h"
#include "tools/seed_report.h"

namespace duet {
namespace {

// Keeps at most `limit` items of each category (0 = all), preserving file order.
template <typename Record>
std::vector<Record> LimitPerCategory(std::vector<Record> records, int64_t limit) {
  if (limit <= 0) return records;
  std::map<world::Category, int64_t> seen;
  std::vector<Record> out;
  for (auto& r : records) {
    if (seen[r.category]++ < limit) out.push_back(std::move(r));
  }
  return out;
}

// Understanding over `images` under `seed`: adds the verdicts to `report`, and gallery
// tiles (when `tiles` is set; GalleryPicker). Item i's caption is sampled under
// seed * 1000003 + seed_offset + i.
absl::Status EvaluateUnderstanding(const world::ModelBundle& bundle, const EvalOptions& o,
                                   const std::vector<world::ImageRecord>& images,
                                   uint64_t seed, uint64_t seed_offset,
                                   eval::ShapesEvalReport* report,
                                   std::vector<eval::GalleryTile>* tiles) {
  const int64_t bs = std::max<int64_t>(1, o.batch_size);
  GalleryPicker gallery(o.gallery_tiles);
  for (size_t begin = 0; begin < images.size(); begin += bs) {
    const size_t end = std::min(images.size(), begin + static_cast<size_t>(bs));
    TokenRows inputs;
    std::vector<uint64_t> seeds;
    std::vector<world::Image> pixels;
    const int px = bundle.world.image_px();
    for (size_t i = begin; i < end; ++i) {
      DUET_ASSIGN_OR_RETURN(world::Image image, world::ReadPng(images[i].image, px, px));
      DUET_ASSIGN_OR_RETURN(auto ids, bundle.EncodeImage(image));
      inputs.push_back(std::move(ids));
      pixels.push_back(std::move(image));
      seeds.push_back(seed * 1000003ULL + seed_offset + i);
    }
    DUET_ASSIGN_OR_RETURN(
        GeneratedSequences out,
        GenerateCaptions(bundle.model, bundle.layout, inputs, seeds, o.captions));
    for (size_t i = begin; i < end; ++i) {
      DUET_ASSIGN_OR_RETURN(std::string text,
                            bundle.DecodeCaption(out.tokens[i - begin]));
      const world::Image& image = pixels[i - begin];
      eval::ParsedScene truth = eval::ParseImage(image, bundle.world);
      if (truth.unrecognized_count() > 0) {
        return absl::DataLossError(absl::StrCat(
            images[i].image, ": the oracle cannot read this evaluation image"));
      }
      eval::UnderstandingVerdict v = eval::ScoreUnderstanding(truth.scene, text);
      report->Add(eval::Direction::kUnderstanding, images[i].category, v.correct);
      if (tiles != nullptr && gallery.Take(images[i].category)) {
        tiles->push_back({image, text, v.correct ? "ok" : v.reason, v.correct});
      }
    }
  }

  return absl::OkStatus();
}

// One evaluation of every item under `seed`: adds the verdicts to `report`, and gallery
// tiles (GalleryPicker).
absl::Status EvaluateSeed(const world::ModelBundle& bundle, const EvalOptions& o,
                          const std::vector<world::PromptRecord>& prompts,
                          const std::vector<world::ImageRecord>& images, uint64_t seed,
                          eval::ShapesEvalReport* report_out,
                          std::vector<eval::GalleryTile>* gen_tiles_out,
                          std::vector<eval::GalleryTile>* und_tiles_out) {
  eval::ShapesEvalReport& report = *report_out;
  std::vector<eval::GalleryTile>& gen_tiles = *gen_tiles_out;
  std::vector<eval::GalleryTile>& und_tiles = *und_tiles_out;
  const int64_t bs = std::max<int64_t>(1, o.batch_size);

  // Generation: one image per prompt.
  GalleryPicker gallery(o.gallery_tiles);
  for (size_t begin = 0; begin < prompts.size(); begin += bs) {
    const size_t end = std::min(prompts.size(), begin + static_cast<size_t>(bs));
    TokenRows captions;
    std::vector<uint64_t> seeds;
    for (size_t i = begin; i < end; ++i) {
      DUET_ASSIGN_OR_RETURN(auto ids, bundle.EncodeCaption(prompts[i].prompt));
      captions.push_back(std::move(ids));
      seeds.push_back(seed * 1000003ULL + i);
    }
    DUET_ASSIGN_OR_RETURN(
        GeneratedSequences out,
        GenerateImages(bundle.model, bundle.layout, captions, seeds, o.images));
    for (size_t i = begin; i < end; ++i) {
      DUET_ASSIGN_OR_RETURN(world::Image image,
                            bundle.DecodeImage(out.tokens[i - begin]));
      eval::GenerationVerdict v =
          eval::ScoreGeneration(prompts[i].parsed, image, bundle.world);
      report.Add(eval::Direction::kGeneration, prompts[i].category, v.correct);
      if (gallery.Take(prompts[i].category)) {
        gen_tiles.push_back(
            {image, prompts[i].prompt, v.correct ? "ok" : v.reason, v.correct});
      }
    }
  }

  // Understanding: one caption per image, against the scene the oracle reads off the
  // exact (never tokenized) image.
  return EvaluateUnderstanding(bundle, o, images, seed, /*seed_offset=*/500000, &report,
                               &und_tiles);
}

// Understanding accuracy of a hard-split report over `category`, or over the whole
// split (both categories; mixed is left out of ShapesEvalReport's own overall).
double HardAccuracy(const eval::ShapesEvalReport& r,
                    std::optional<world::Category> category) {
  int64_t correct = 0, total = 0;
  for (world::Category c : world::kHardSplitCategories) {
    if (category.has_value() && c != *category) continue;
    correct += r.Correct(eval::Direction::kUnderstanding, c);
    total += r.Total(eval::Direction::kUnderstanding, c);
  }
  return total == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(total);
}

// The hard split's rows: each category and "overall", the mean over seeds (with more than
// one seed, ±95% interval of the mean).
std::string HardSplitTable(const std::vector<eval::ShapesEvalReport>& per_seed,
                           size_t items) {
  std::string out = absl::StrFormat(
      "hard understanding split (%s, %d images%s)\n", world::kEvalUndHardFile, items,
      per_seed.size() > 1
          ? absl::StrFormat(", %d seeds: mean ±95%% interval", per_seed.size())
          : "");
  std::vector<std::optional<world::Category>> rows(world::kHardSplitCategories.begin(),
                                                   world::kHardSplitCategories.end());
  rows.push_back(std::nullopt);
  for (const std::optional<world::Category>& row : rows) {
    std::vector<double> values;
    for (const eval::ShapesEvalReport& r : per_seed)
      values.push_back(HardAccuracy(r, row));
    const SeedSummary sum = Summarize(values);
    const std::string name =
        row.has_value() ? std::string(world::CategoryName(*row)) : "overall";
    out += per_seed.size() > 1 ? absl::StrFormat("%-12s %5.1f%% ±%.1f\n", name,
                                                 100 * sum.mean, 100 * sum.ci95)
                               : absl::StrFormat("%-12s %5.1f%%\n", name, 100 * sum.mean);
  }
  return out;
}

// {"position": {"per_seed": [...], "mean", "stddev", "ci95", "correct", "total"},
// "mixed": ..., "overall": ...}
nlohmann::json HardSplitJson(const std::vector<eval::ShapesEvalReport>& per_seed) {
  nlohmann::json j;
  std::vector<std::optional<world::Category>> rows(world::kHardSplitCategories.begin(),
                                                   world::kHardSplitCategories.end());
  rows.push_back(std::nullopt);
  for (const std::optional<world::Category>& row : rows) {
    std::vector<double> values;
    int64_t correct = 0, total = 0;
    for (const eval::ShapesEvalReport& r : per_seed) {
      values.push_back(HardAccuracy(r, row));
      for (world::Category c : world::kHardSplitCategories) {
        if (row.has_value() && c != *row) continue;
        correct += r.Correct(eval::Direction::kUnderstanding, c);
        total += r.Total(eval::Direction::kUnderstanding, c);
      }
    }
    const SeedSummary sum = Summarize(values);
    j[row.has_value() ? std::string(world::CategoryName(*row)) : "overall"] = {
        {"per_seed", values}, {"mean", sum.mean},   {"stddev", sum.stddev},
        {"ci95", sum.ci95},   {"correct", correct}, {"total", total}};
  }
  return j;
}

}  // namespace

absl::StatusOr<EvalResult> RunShapesEval(const world::ModelBundle& bundle,
                                         const EvalOptions& o) {
  if (o.eval_seeds < 1) return absl::InvalidArgumentError("eval_seeds must be >= 1");
  DUET_ASSIGN_OR_RETURN(auto prompts,
                        world::ReadPrompts(JoinPath(o.data_dir, "eval_gen.jsonl")));
  DUET_ASSIGN_OR_RETURN(auto images,
                        world::ReadImages(JoinPath(o.data_dir, "eval_und.jsonl")));
  prompts = LimitPerCategory(std::move(prompts), o.limit_per_category);
  images = LimitPerCategory(std::move(images), o.limit_per_category);
  // The hard understanding split, where the data folder has one (common/world/dataset.h).
  const std::string hard_path = JoinPath(o.data_dir, world::kEvalUndHardFile);
  const bool has_hard = PathExists(hard_path);
  std::vector<world::ImageRecord> hard_images;
  if (has_hard) {
    DUET_ASSIGN_OR_RETURN(hard_images, world::ReadImages(hard_path));
    hard_images = LimitPerCategory(std::move(hard_images), o.limit_per_category);
  }
  std::vector<eval::ShapesEvalReport> hard_per_seed;
  eval::ShapesEvalReport report;  // all seeds pooled
  std::vector<eval::ShapesEvalReport> per_seed;
  std::vector<uint64_t> seeds;
  std::vector<eval::GalleryTile> gen_tiles, und_tiles,
      later_tiles;  // the gallery: the first seed's
  for (int64_t s = 0; s < o.eval_seeds; ++s) {
    seeds.push_back(o.seed + static_cast<uint64_t>(s));
    per_seed.emplace_back();
    later_tiles.clear();
    DUET_RETURN_IF_ERROR(EvaluateSeed(
        bundle, o, prompts, images, seeds.back(), &per_seed.back(),
        s == 0 ? &gen_tiles : &later_tiles, s == 0 ? &und_tiles : &later_tiles));
    report.Merge(per_seed.back());
    if (has_hard) {
      hard_per_seed.emplace_back();
      DUET_RETURN_IF_ERROR(EvaluateUnderstanding(
          bundle, o, hard_images, seeds.back(), /*seed_offset=*/700000,
          &hard_per_seed.back(), /*tiles=*/nullptr));
    }
  }

  EvalResult result;
  result.generation_accuracy = report.Accuracy(eval::Direction::kGeneration);
  result.understanding_accuracy = report.Accuracy(eval::Direction::kUnderstanding);
  for (const eval::ShapesEvalReport& r : per_seed) {
    result.generation_per_seed.push_back(r.Accuracy(eval::Direction::kGeneration));
    result.understanding_per_seed.push_back(r.Accuracy(eval::Direction::kUnderstanding));
  }
  result.table = report.FormatTable();
  nlohmann::json j = report.ToJson();
  if (o.eval_seeds > 1) {
    result.table += "\n" + SeedSpreadTable(per_seed);
    j["seeds"] = SeedSpreadJson(per_seed, seeds);
  }
  j["settings"] = {{"cfg_scale", o.images.cfg_scale.value_or(0.0)},
                   {"image_temperature", o.images.sampling.temperature},
                   {"image_top_k", o.images.sampling.top_k},
                   {"image_top_p", o.images.sampling.top_p},
                   {"caption_temperature", o.captions.temperature},
                   {"seed", o.seed},
                   {"generation_items", prompts.size()},
                   {"understanding_items", images.size()}};
  if (o.eval_seeds > 1) j["settings"]["eval_seeds"] = o.eval_seeds;
  if (has_hard) {
    result.has_hard_split = true;
    for (const eval::ShapesEvalReport& r : hard_per_seed) {
      result.hard_understanding_per_seed.push_back(HardAccuracy(r, std::nullopt));
    }
    result.hard_understanding_accuracy =
        Summarize(result.hard_understanding_per_seed).mean;
    result.table += "\n" + HardSplitTable(hard_per_seed, hard_images.size());
    j["understanding_hard"] = HardSplitJson(hard_per_seed);
    j["settings"]["understanding_hard_items"] = hard_images.size();
  }
  result.report_json = j.dump(2);
  if (!o.report_dir.empty()) {
    DUET_RETURN_IF_ERROR(MakeDirs(o.report_dir));
    result.report_path = JoinPath(o.report_dir, "report.json");
    DUET_RETURN_IF_ERROR(WriteFileAtomically(result.report_path, result.report_json));
    std::vector<eval::GalleryTile> tiles = gen_tiles;
    tiles.insert(tiles.end(), und_tiles.begin(), und_tiles.end());
    result.gallery_path = JoinPath(o.report_dir, "gallery.png");
    DUET_RETURN_IF_ERROR(
        eval::WriteGallery(result.gallery_path, tiles, /*columns=*/8, /*scale=*/4));
  }
  return result;
}

}  // namespace duet
