#ifndef DUET_TOOLS_SHAPES_EVAL_H_
#define DUET_TOOLS_SHAPES_EVAL_H_

// ShapesEval of a model on the held-out sets (eval_gen.jsonl, eval_und.jsonl, and the
// hard understanding split eval_und_hard.jsonl where the data folder has it): samples one
// image per generation prompt and one caption per understanding image, scores them with
// the oracle, and writes report.json and gallery.png. Evaluation only: training code
// never links this (or the oracle).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/generation.h"
#include "common/world/bundle.h"
#include "common/world/caption.h"

namespace duet {

// Which evaluation items a gallery shows: the first `tiles` / kNumCategories items of
// each category, in the order they are offered (the held-out files list their items
// category by category, so the gallery shows every category, not only the first).
class GalleryPicker {
 public:
  explicit GalleryPicker(int tiles) : per_category_(tiles / world::kNumCategories) {}
  // Whether the next item, of `category`, gets a tile.
  bool Take(world::Category category) {
    return seen_[static_cast<int>(category)]++ < per_category_;
  }

 private:
  int per_category_;
  std::array<int, world::kNumCategoryValues> seen_{};
};

inline SamplingParams GreedySampling() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

struct EvalOptions {
  std::string data_dir;
  // Items per category and direction (0 = all).
  int64_t limit_per_category = 0;
  // Image sampling (one sample per prompt; the seed of item i is a function of seed, i).
  ImageGenerationOptions images;
  // Caption decoding (greedy by default).
  SamplingParams captions = GreedySampling();
  uint64_t seed = 1;
  // Evaluation seeds: the whole evaluation runs under seeds seed..seed+eval_seeds-1 and
  // the report pools them (each figure the mean over the seeds, and with more than one
  // seed also its spread and 95% interval; the gallery shows the first seed). 1 gives
  // exactly the single-seed report.
  int64_t eval_seeds = 1;
  int64_t batch_size = 64;
  // Where report.json and gallery.png go (created). Empty: nothing is written.
  std::string report_dir;
  // Tiles per direction in the gallery, spread evenly over the evaluated categories (the
  // first gallery_tiles / 4 items of each, in file order; with 8 columns, one row each).
  int gallery_tiles = 32;
};

struct EvalResult {
  // Over all seeds (the mean of the per-seed accuracies: every seed has the same items).
  double generation_accuracy = 0;
  double understanding_accuracy = 0;
  std::vector<double> generation_per_seed, understanding_per_seed;
  // The hard understanding split (common/world/dataset.h kEvalUndHardFile), when the data
  // folder has one: its accuracy over position and mixed images (mean over seeds) and per
  // seed. The table and report.json ("understanding_hard") show it beside the standard
  // split.
  bool has_hard_split = false;
  double hard_understanding_accuracy = 0;
  std::vector<double> hard_understanding_per_seed;
  std::string table;        // terminal table (with several seeds, also their spread)
  std::string report_json;  // the JSON report
  std::string report_path;
  std::string gallery_path;
};

// InvalidArgument when options.eval_seeds < 1.
absl::StatusOr<EvalResult> RunShapesEval(const world::ModelBundle& bundle,
                                         const EvalOptions& options);

}  // namespace duet

#endif  // DUET_TOOLS_SHAPES_EVAL_H_
