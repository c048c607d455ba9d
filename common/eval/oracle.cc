#include "common/eval/oracle.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/strings.h"
#include "common/world/render.h"

namespace duet::eval {
namespace {

using ::duet::ToAbsl;
using world::Caption;
using world::Category;
using world::Description;
using world::Object;
using world::Scene;

std::string Cell(int row, int col) { return absl::StrCat("(", row, ",", col, ")"); }

std::string ObjectText(const Object& o) {
  return absl::StrCat(ToAbsl(world::ColorName(o.color)), " ",
                      ToAbsl(world::ShapeName(o.shape)), " ", Cell(o.row, o.col));
}

// How a scene differs from what a caption says.
struct Mismatch {
  std::vector<Description> missing;  // said by the caption, absent from the scene
  std::vector<Object> extra;         // in the scene, not said by the caption
  std::string relation;              // non-empty when only the relation fails
};

Mismatch Diagnose(const Scene& scene, const Caption& caption) {
  std::vector<Description> wanted;
  if (caption.category == Category::kSingle || caption.category == Category::kCounting) {
    wanted.assign(caption.count, caption.a);
  } else if (caption.category == Category::kMixed) {
    for (const world::Phrase& p : caption.phrases) {
      wanted.insert(wanted.end(), p.count, p.description);
    }
  } else {
    wanted = {caption.a, caption.b};
  }
  std::vector<bool> used(scene.objects.size(), false);
  // For position captions, which object matched a and b.
  std::optional<size_t> match_a, match_b;
  Mismatch m;
  for (size_t w = 0; w < wanted.size(); ++w) {
    bool found = false;
    for (size_t i = 0; i < scene.objects.size() && !found; ++i) {
      if (used[i] || !wanted[w].Matches(scene.objects[i])) continue;
      used[i] = found = true;
      (w == 0 ? match_a : match_b) = i;
    }
    if (!found) m.missing.push_back(wanted[w]);
  }
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    if (!used[i]) m.extra.push_back(scene.objects[i]);
  }
  if (m.missing.empty() && m.extra.empty() && caption.category == Category::kPosition) {
    const Object& a = scene.objects[*match_a];
    const Object& b = scene.objects[*match_b];
    if (!world::RelationHolds(a, b, caption.relation)) {
      m.relation =
          absl::StrCat("relation not satisfied: ", ObjectText(a), " is not ",
                       ToAbsl(world::RelationName(caption.relation)), " ", ObjectText(b));
    }
  }
  return m;
}

// "blue square" or "2 blue squares", aggregating equal descriptions in order.
std::vector<std::string> CountedDescriptions(const std::vector<Description>& ds) {
  std::vector<std::pair<Description, int>> counted;
  for (const Description& d : ds) {
    auto it = std::find_if(counted.begin(), counted.end(),
                           [&](const auto& p) { return p.first == d; });
    if (it == counted.end()) {
      counted.emplace_back(d, 1);
    } else {
      ++it->second;
    }
  }
  std::vector<std::string> out;
  for (const auto& [d, n] : counted) {
    out.push_back(n == 1 ? world::DescriptionText(d)
                         : absl::StrCat(n, " ", ToAbsl(world::ColorName(d.color)), " ",
                                        ToAbsl(world::ShapePlural(d.shape))));
  }
  return out;
}

double ColorDistance(const double mean[3], world::Rgb p) {
  const double dr = mean[0] - p.r, dg = mean[1] - p.g, db = mean[2] - p.b;
  return std::sqrt(dr * dr + dg * dg + db * db);
}

// The palette entry nearest to `rgb` (the first of equals).
world::Color NearestColor(const double rgb[3]) {
  world::Color color = world::kAllColors[0];
  double best = 1e18;
  for (world::Color c : world::kAllColors) {
    const double d = ColorDistance(rgb, world::PaletteRgb(c));
    if (d < best) {
      best = d;
      color = c;
    }
  }
  return color;
}

}  // namespace

ParsedScene ParseImage(const world::Image& image, const world::WorldConfig& config) {
  ParsedScene parsed;
  const int cell_px = config.cell_px;
  const int centered = (cell_px - world::kMaskPx) / 2;
  std::vector<uint8_t> lit(static_cast<size_t>(cell_px) * cell_px);
  for (int row = 0; row < config.grid; ++row) {
    for (int col = 0; col < config.grid; ++col) {
      int lit_count = 0;
      double sum[3] = {0, 0, 0};
      for (int y = 0; y < cell_px; ++y) {
        for (int x = 0; x < cell_px; ++x) {
          const int px = col * cell_px + x, py = row * cell_px + y;
          bool on = false;
          if (image.IsValid() && image.InBounds(px, py)) {
            const world::Rgb p = image.Pixel(px, py);
            on = std::max({p.r, p.g, p.b}) > kLitThreshold;
            if (on) {
              sum[0] += p.r;
              sum[1] += p.g;
              sum[2] += p.b;
            }
          }
          lit[y * cell_px + x] = on;
          lit_count += on;
        }
      }
      if (lit_count == 0) continue;

      const double mean[3] = {sum[0] / lit_count, sum[1] / lit_count, sum[2] / lit_count};
      const world::Color color = NearestColor(mean);
      const double best_distance = ColorDistance(mean, world::PaletteRgb(color));
      // One palette colour: every lit pixel's nearest entry is the cell's.
      bool one_color = true;
      for (int y = 0; y < cell_px && one_color; ++y) {
        for (int x = 0; x < cell_px && one_color; ++x) {
          if (!lit[y * cell_px + x]) continue;
          const world::Rgb p = image.Pixel(col * cell_px + x, row * cell_px + y);
          const double rgb[3] = {static_cast<double>(p.r), static_cast<double>(p.g),
                                 static_cast<double>(p.b)};
          one_color = NearestColor(rgb) == color;
        }
      }

      world::Shape shape = world::kAllShapes[0];
      double best_iou = -1;
      for (world::Shape s : world::kAllShapes) {
        for (int dy = -config.jitter_px; dy <= config.jitter_px; ++dy) {
          for (int dx = -config.jitter_px; dx <= config.jitter_px; ++dx) {
            const int ox = centered + dx, oy = centered + dy;
            int inter = 0, mask_count = 0;
            for (int y = 0; y < world::kMaskPx; ++y) {
              for (int x = 0; x < world::kMaskPx; ++x) {
                if (!world::ShapeMaskAt(s, x, y)) continue;
                ++mask_count;
                const int cx = ox + x, cy = oy + y;
                if (cx >= 0 && cx < cell_px && cy >= 0 && cy < cell_px) {
                  inter += lit[cy * cell_px + cx];
                }
              }
            }
            const double iou =
                static_cast<double>(inter) / (mask_count + lit_count - inter);
            if (iou > best_iou) {
              best_iou = iou;
              shape = s;
            }
          }
        }
      }
      if (!one_color || best_distance > kMaxColorDistance || best_iou < kMinShapeIou) {
        parsed.unrecognized_cells.emplace_back(row, col);
        continue;
      }
      parsed.scene.objects.push_back(Object{color, shape, row, col});
    }
  }
  return parsed;
}

GenerationVerdict ScoreGeneration(const Caption& prompt, const world::Image& image,
                                  const world::WorldConfig& config) {
  GenerationVerdict v;
  const int px = config.image_px();
  if (!image.IsValid() || image.width != px || image.height != px) {
    v.reason = absl::StrCat("image is ", image.width, "x", image.height, ", expected ",
                            px, "x", px);
    return v;
  }
  v.parsed = ParseImage(image, config);
  std::vector<std::string> reasons;
  for (const auto& [row, col] : v.parsed.unrecognized_cells) {
    reasons.push_back(absl::StrCat("unrecognized cell ", Cell(row, col)));
  }
  if (reasons.empty() && world::Satisfies(v.parsed.scene, prompt)) {
    v.correct = true;
    return v;
  }
  const Mismatch m = Diagnose(v.parsed.scene, prompt);
  for (const std::string& d : CountedDescriptions(m.missing)) {
    reasons.push_back(absl::StrCat("missing ", d));
  }
  for (const Object& o : m.extra)
    reasons.push_back(absl::StrCat("extra ", ObjectText(o)));
  if (!m.relation.empty()) reasons.push_back(m.relation);
  if (reasons.empty()) reasons.push_back("does not match the prompt");
  v.reason = absl::StrJoin(reasons, "; ");
  return v;
}

UnderstandingVerdict ScoreUnderstanding(const Scene& truth,
                                        std::string_view caption_text) {
  UnderstandingVerdict v;
  absl::StatusOr<Caption> caption = world::ParseCaption(caption_text);
  if (!caption.ok()) {
    v.reason = absl::StrCat("not in the grammar: ", caption.status().message());
    return v;
  }
  if (world::Satisfies(truth, *caption)) {
    v.correct = true;
    return v;
  }
  const Mismatch m = Diagnose(truth, *caption);
  std::vector<std::string> reasons;
  for (const std::string& d : CountedDescriptions(m.missing)) {
    reasons.push_back(absl::StrCat("mentions ", d, " not in the image"));
  }
  for (const Object& o : m.extra)
    reasons.push_back(absl::StrCat("misses ", ObjectText(o)));
  if (!m.relation.empty()) reasons.push_back(m.relation);
  if (reasons.empty()) reasons.push_back("does not describe the image");
  v.reason = absl::StrJoin(reasons, "; ");
  return v;
}

std::string_view DirectionName(Direction direction) {
  return direction == Direction::kGeneration ? "generation" : "understanding";
}

void ShapesEvalReport::Add(Direction direction, Category category, bool correct) {
  Cell& cell = counts_[static_cast<int>(direction)][static_cast<int>(category)];
  ++cell.total;
  cell.correct += correct;
}

void ShapesEvalReport::Merge(const ShapesEvalReport& other) {
  for (int d = 0; d < 2; ++d) {
    for (int c = 0; c < world::kNumCategoryValues; ++c) {
      counts_[d][c].correct += other.counts_[d][c].correct;
      counts_[d][c].total += other.counts_[d][c].total;
    }
  }
}

int64_t ShapesEvalReport::Total(Direction direction, Category category) const {
  return counts_[static_cast<int>(direction)][static_cast<int>(category)].total;
}

int64_t ShapesEvalReport::Correct(Direction direction, Category category) const {
  return counts_[static_cast<int>(direction)][static_cast<int>(category)].correct;
}

int64_t ShapesEvalReport::Total(Direction direction) const {
  int64_t n = 0;
  for (Category c : world::kAllCategories) n += Total(direction, c);
  return n;
}

int64_t ShapesEvalReport::Correct(Direction direction) const {
  int64_t n = 0;
  for (Category c : world::kAllCategories) n += Correct(direction, c);
  return n;
}

double ShapesEvalReport::Accuracy(Direction direction, Category category) const {
  const int64_t total = Total(direction, category);
  return total == 0 ? 0.0 : static_cast<double>(Correct(direction, category)) / total;
}

double ShapesEvalReport::Accuracy(Direction direction) const {
  const int64_t total = Total(direction);
  return total == 0 ? 0.0 : static_cast<double>(Correct(direction)) / total;
}

nlohmann::json ShapesEvalReport::ToJson() const {
  nlohmann::json out = nlohmann::json::object();
  for (Direction d : {Direction::kGeneration, Direction::kUnderstanding}) {
    nlohmann::json per = nlohmann::json::object();
    for (Category c : world::kAllCategories) {
      per[std::string(world::CategoryName(c))] = {{"correct", Correct(d, c)},
                                                  {"total", Total(d, c)},
                                                  {"accuracy", Accuracy(d, c)}};
    }
    per["overall"] = {
        {"correct", Correct(d)}, {"total", Total(d)}, {"accuracy", Accuracy(d)}};
    out[std::string(DirectionName(d))] = per;
  }
  return out;
}

std::string ShapesEvalReport::FormatTable() const {
  auto percent = [](int64_t correct, int64_t total) {
    return total == 0 ? std::string("-")
                      : absl::StrFormat("%.1f%%", 100.0 * correct / total);
  };
  std::string out = absl::StrFormat("%-12s %10s %13s %7s %7s\n", "category", "generation",
                                    "understanding", "n_gen", "n_und");
  auto row = [&](std::string_view name, int64_t gc, int64_t gt, int64_t uc, int64_t ut) {
    absl::StrAppendFormat(&out, "%-12s %10s %13s %7d %7d\n", ToAbsl(name),
                          percent(gc, gt), percent(uc, ut), gt, ut);
  };
  const Direction g = Direction::kGeneration, u = Direction::kUnderstanding;
  for (Category c : world::kAllCategories) {
    row(world::CategoryName(c), Correct(g, c), Total(g, c), Correct(u, c), Total(u, c));
  }
  row("overall", Correct(g), Total(g), Correct(u), Total(u));
  return out;
}

}  // namespace duet::eval
