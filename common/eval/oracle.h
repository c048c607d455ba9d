#ifndef DUET_COMMON_EVAL_ORACLE_H_
#define DUET_COMMON_EVAL_ORACLE_H_

// The Shapes world's evaluation oracle: reads a scene back out of an image with fixed
// rules (no learning) and scores generated images and captions against the world's exact
// semantics. Only evaluation links this library; training code must not (it would be
// a perfect reward model the learner is not meant to see).
//
// Parsing, per cell of the grid (exact: a cell holds nothing, or one known shape in one
// palette colour, and nothing else):
//   - a pixel is lit when its largest channel is > 60; a cell without lit pixels is
//     empty; any lit pixel makes the cell hold something that must be recognized (there
//     is no minimum size: a 1-pixel speck in an empty cell fails a prompt);
//   - color: every lit pixel's nearest palette entry (Euclidean RGB) must be the same
//     entry, and the mean color of the lit pixels must lie within 90 of it; otherwise the
//     cell is unrecognized;
//   - shape: the mask, among the 4 shapes x 9 jitter offsets, with the highest IoU
//     against the lit pixels of the cell; best IoU < 0.8 -> unrecognized. 0.8 rejects a
//     triangle cut to 16 of its 24 pixels (IoU 0.67) and a 41-pixel blob that covers a
//     32-pixel circle (0.78); tokenized-then-decoded renders of the world score >= 0.857
//     (2000 scenes, eval_tokenizer_oracle_test's tokenizer).
//
// Thread-safety: pure functions; ShapesEvalReport is a value type without internal
// locking (use one per thread, then Merge).

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/world/caption.h"
#include "common/world/image.h"
#include "common/world/scene.h"

namespace duet::eval {

// Parsing thresholds (see the file comment).
inline constexpr int kLitThreshold = 60;
inline constexpr double kMaxColorDistance = 90.0;
inline constexpr double kMinShapeIou = 0.8;

struct ParsedScene {
  world::Scene scene;  // the recognized objects, in row-major cell order
  // Cells (row, col) that hold something that is no recognizable object, row-major.
  std::vector<std::pair<int, int>> unrecognized_cells;

  int unrecognized_count() const { return static_cast<int>(unrecognized_cells.size()); }
};

// Parses `image` cell by cell. An image whose size is not config.image_px() square is
// parsed over the part that overlaps the grid (pixels outside the image count as unlit);
// ScoreGeneration rejects such images outright.
// REQUIRES: ValidateWorldConfig(config) is OK.
ParsedScene ParseImage(const world::Image& image,
                       const world::WorldConfig& config = world::WorldConfig());

struct GenerationVerdict {
  bool correct = false;
  // Empty when correct; otherwise short reasons joined by "; ", e.g.
  // "missing blue square", "extra red circle at (0,2)", "unrecognized cell (1,2)",
  // "relation not satisfied: red circle (0,1) is not left of blue square (0,0)".
  std::string reason;
  ParsedScene parsed;
};

// Scores an image generated for `prompt`: correct iff the image has the world's size, no
// cell is unrecognized, and Satisfies(parsed scene, prompt).
GenerationVerdict ScoreGeneration(
    const world::Caption& prompt, const world::Image& image,
    const world::WorldConfig& config = world::WorldConfig());

struct UnderstandingVerdict {
  bool correct = false;
  // Empty when correct; otherwise e.g. "not in the grammar: <parser message>",
  // "mentions a green cross that is not in the image", "misses the red circle at (0,1)",
  // "relation not satisfied: ...".
  std::string reason;
};

// Scores a caption produced for an image of the scene `truth`: correct iff ParseCaption
// succeeds and Satisfies(truth, caption). Any true caption counts, not only the
// canonical one.
UnderstandingVerdict ScoreUnderstanding(const world::Scene& truth,
                                        std::string_view caption_text);

enum class Direction { kGeneration, kUnderstanding };

// "generation", "understanding".
std::string_view DirectionName(Direction direction);

// Accuracy per category and direction. Reports (ToJson, FormatTable, the overall
// Total/Correct/Accuracy) cover the four evaluated categories of world::kAllCategories;
// samples of a training-only category (world::kTrainingOnlyCategories) are kept under
// their own category but left out of the reports.
class ShapesEvalReport {
 public:
  void Add(Direction direction, world::Category category, bool correct);
  // Adds every count of `other`.
  void Merge(const ShapesEvalReport& other);

  int64_t Total(Direction direction, world::Category category) const;
  int64_t Correct(Direction direction, world::Category category) const;
  int64_t Total(Direction direction) const;
  int64_t Correct(Direction direction) const;
  // Correct / Total; 0 when there are no samples.
  double Accuracy(Direction direction, world::Category category) const;
  // Over all samples of the direction (micro average); 0 when there are none.
  double Accuracy(Direction direction) const;

  // {"generation": {"single": {"correct": 98, "total": 100, "accuracy": 0.98}, ...,
  //                 "overall": {...}},
  //  "understanding": {...}}
  nlohmann::json ToJson() const;

  // An aligned table: one row per category and an "overall" row; columns generation and
  // understanding accuracy (percent, "-" without samples) and their sample counts.
  std::string FormatTable() const;

 private:
  struct Cell {
    int64_t correct = 0;
    int64_t total = 0;
  };
  // counts_[direction][category], over every Category value (so Add of a training-only
  // category is safe; it is counted but not reported).
  std::array<std::array<Cell, world::kNumCategoryValues>, 2> counts_{};
};

}  // namespace duet::eval

#endif  // DUET_COMMON_EVAL_ORACLE_H_
