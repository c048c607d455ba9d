#ifndef DUET_COMMON_WORLD_DATASET_H_
#define DUET_COMMON_WORLD_DATASET_H_

// The Shapes world's data files: JSONL records (one JSON object per line) that point at
// PNG images by paths relative to the JSONL file's folder, and MakeData, which writes a
// complete data folder.
//
// Record kinds:
//   pairs    {"image": "images/sft/000001.png", "caption": "a red circle",
//             "category": "single"}                       (sft.jsonl, eval_und.jsonl)
//   prompts  {"prompt": "two blue squares", "category": "counting"}
//                                                  (rl_gen_prompts.jsonl, eval_gen.jsonl)
//   images   {"image": "images/rl/000001.png", "category": "position"}
//                                                                  (rl_und_images.jsonl)
// "category" is optional in pairs and prompts (it follows from the caption) but must
// agree with the caption when present; it is required in image records.
//
// Thread-safety: free functions with no shared state.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/world/caption.h"
#include "common/world/scene.h"

namespace duet::world {

// File names inside a data folder written by MakeData.
inline constexpr char kCodebookFile[] = "tokenizer/codebook.safetensors";
inline constexpr char kSftFile[] = "sft.jsonl";
inline constexpr char kRlGenPromptsFile[] = "rl_gen_prompts.jsonl";
inline constexpr char kRlUndImagesFile[] = "rl_und_images.jsonl";
inline constexpr char kEvalGenFile[] = "eval_gen.jsonl";
inline constexpr char kEvalUndFile[] = "eval_und.jsonl";
inline constexpr char kManifestFile[] = "manifest.json";
inline constexpr char kEvalUndHardFile[] = "eval_und_hard.jsonl";

struct PairRecord {
  std::string image;    // path of the PNG, resolved against the JSONL file's folder
  std::string caption;  // the caption text, in the grammar
  Caption parsed;       // ParseCaption(caption)
  Category category = Category::kSingle;
};

struct PromptRecord {
  std::string prompt;  // the prompt text, in the grammar
  Caption parsed;      // ParseCaption(prompt)
  Category category = Category::kSingle;
};

struct ImageRecord {
  std::string image;  // path of the PNG, resolved against the JSONL file's folder
  Category category = Category::kSingle;
};

// Read a JSONL file of the given kind. Blank lines are skipped. Errors name the file
// and the 1-based line: NotFound for a missing file; InvalidArgument for a line that is
// not a JSON object, a missing or non-string key, a caption or prompt outside the
// grammar, an unknown category, or a category that disagrees with the caption. The
// images themselves are not opened.
absl::StatusOr<std::vector<PairRecord>> ReadPairs(const std::string& path);
absl::StatusOr<std::vector<PromptRecord>> ReadPrompts(const std::string& path);
absl::StatusOr<std::vector<ImageRecord>> ReadImages(const std::string& path);

struct MakeDataOptions {
  std::string out_dir;    // created if missing; existing files are overwritten
  int sft_pairs = 20000;  // paired SFT examples, categories in rotation
  // Share of the SFT pairs that are mixed scenes (training-only category: 3 objects not
  // all equal) with their canonical captions, so the understanding direction learns to
  // describe scenes with an extra object. In [0, 1]; the mixed pairs are spread evenly
  // (pair i is mixed iff floor((i + 1) * f) > floor(i * f)).
  double mixed_fraction = 0.2;
  int rl_prompts = 2000;          // text-only generation prompts for RL
  int rl_images = 2000;           // unlabelled images for understanding RL
  int eval_per_category = 100;    // per category, in each of eval_gen and eval_und
  int codebook_size = 512;        // image tokenizer codebook entries
  int tokenizer_images = 4000;    // freshly rendered images the tokenizer is trained on
  int tokenizer_iterations = 20;  // k-means iterations
  uint64_t seed = 1;
  WorldConfig world;
};

// Writes a complete data folder under options.out_dir:
//   tokenizer/codebook.safetensors  image tokenizer (ImageTokenizer::Save)
//   sft.jsonl + images/sft/*.png    pairs with canonical captions: a mixed_fraction
//                                   share of mixed pairs, the rest the four evaluated
//                                   categories in rotation
//   rl_gen_prompts.jsonl            prompts from SampleCaption, categories in rotation
//   rl_und_images.jsonl + images/rl/*.png   images only, categories in rotation
//   eval_gen.jsonl                  eval_per_category prompts per category
//   eval_und.jsonl + images/eval/*.png      eval_per_category pairs per category, with
//                                   the canonical caption as "caption"
//   eval_und_hard.jsonl + images/eval_hard/*.png   the hard understanding split (see
//                                   MakeHardUnderstandingSplit; seed options.seed)
//   manifest.json                   counts (with sft_mixed_pairs), mixed_fraction, seed,
//                                   world config, file names (written last: its
//                                   presence marks a complete folder)
// RL files and eval files hold the four evaluated categories only (never mixed).
// Held-out guarantees: no eval image is pixel-identical to an SFT, RL or tokenizer
// training image; eval prompts of two_objects and position are distinct and never occur
// as strings among the RL prompts. Single (24 strings) and counting (48 strings) prompts
// are too few to hold out and are shared between eval and RL.
// The output depends only on the options. InvalidArgument for negative counts, a
// mixed_fraction outside [0, 1], an
// invalid world config, a codebook_size outside [2, 512] (the image token range), or
// eval_per_category > 276 (half the two_objects strings must remain for RL).
absl::Status MakeData(const MakeDataOptions& options);

// The hard held-out understanding split, eval_und_hard.jsonl + images/eval_hard/*.png,
// reported by ShapesEval beside the standard split (eval_und.jsonl, unchanged). The
// standard split is near its ceiling on the base model (single and counting 100%), so
// it has little room to show an understanding gain; this one holds only the scenes the
// base model reads least well, in equal numbers:
//   position: two different objects sharing a row or a column (the caption must name
//             the relation and order the objects right);
//   mixed:    three objects, not all equal (a pair plus another kind, or three kinds);
//             a training-only category of the standard evaluation.
// Each record holds the image, its canonical caption and its category. No image is
// pixel-identical to an SFT, RL or standard-eval image of the folder. Defined (this
// seed, these categories, these counts) before any RL'd model was evaluated on it.
inline constexpr std::array<Category, 2> kHardSplitCategories = {Category::kPosition,
                                                                 Category::kMixed};
struct HardSplitOptions {
  int per_category = 200;
  // The split's own random stream (mixed with the folder's seed), so that the other
  // files of MakeData do not change.
  uint64_t seed = 1;
  WorldConfig world;
};
inline constexpr uint64_t kHardSplitSeedSalt = 0x48415244ULL;  // "HARD"

// Writes the hard split into the existing data folder `data_dir` (made by MakeData),
// avoiding every image that sft.jsonl, rl_und_images.jsonl and eval_und.jsonl list.
// MakeData writes it too. InvalidArgument for per_category outside [1, 1000]; errors of
// reading the folder's images.
absl::Status MakeHardUnderstandingSplit(const std::string& data_dir,
                                        const HardSplitOptions& options);

}  // namespace duet::world

#endif  // DUET_COMMON_WORLD_DATASET_H_
