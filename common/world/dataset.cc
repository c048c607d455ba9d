#include "common/world/dataset.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/base/strings.h"
#include "common/model/token_layout.h"
#include "common/world/image_tokenizer.h"
#include "common/world/png_io.h"
#include "common/world/render.h"

namespace duet::world {
namespace {

using nlohmann::json;

// At most half of the 552 two_objects prompt strings may be held out for evaluation.
constexpr int kMaxEvalPerCategory = 276;
// Images rendered and written per batch (bounds memory).
constexpr int kWriteBatch = 4096;

// ---- Reading ---------------------------------------------------------------------

// Calls `fn(line_number, object)` for each non-blank line of the JSONL file at `path`.
absl::Status ForEachJsonLine(const std::string& path,
                             const std::function<absl::Status(int, const json&)>& fn) {
  DUET_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    const json object =
        json::parse(line.begin(), line.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
    absl::Status status;
    if (object.is_discarded()) {
      status = absl::InvalidArgumentError("not valid JSON");
    } else if (!object.is_object()) {
      status = absl::InvalidArgumentError("not a JSON object");
    } else {
      status = fn(line_number, object);
    }
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(path, ":", line_number, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end())
    return absl::InvalidArgumentError(absl::StrCat("no \"", key, "\""));
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a string"));
  }
  return it->get<std::string>();
}

// The category of a record whose text parsed as `parsed`: the "category" field if
// present (which must agree), else the caption's.
absl::StatusOr<Category> RecordCategory(const json& object, const Caption& parsed) {
  if (object.find("category") == object.end()) return parsed.category;
  DUET_ASSIGN_OR_RETURN(std::string name, GetString(object, "category"));
  DUET_ASSIGN_OR_RETURN(Category category, CategoryFromName(name));
  if (category != parsed.category) {
    return absl::InvalidArgumentError(
        absl::StrCat("category \"", name, "\" disagrees with the caption's category \"",
                     ToAbsl(CategoryName(parsed.category)), "\""));
  }
  return category;
}

std::string Folder(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

std::string Resolve(const std::string& folder, const std::string& image) {
  return folder.empty() ? image : JoinPath(folder, image);
}

// ---- Writing ---------------------------------------------------------------------

// One PNG to write: relative path inside the data folder and the image.
struct PendingImage {
  std::string relative_path;
  Image image;
};

absl::Status ErrnoStatus(const std::string& what, int err) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

// Writes `contents` to `path` without fsync (one fsync per image would dominate the
// run): SyncFolder makes all data durable before the manifest marks the folder complete.
absl::Status WriteFileUnsynced(const std::string& path, const std::string& contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(absl::StrCat("cannot create ", path), errno);
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(absl::StrCat("cannot write ", path), err);
    }
    written += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return ErrnoStatus(absl::StrCat("cannot close ", path), errno);
  return absl::OkStatus();
}

// Flushes everything written to the file system holding `dir` to disk.
absl::Status SyncFolder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("cannot open ", dir), errno);
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(absl::StrCat("cannot sync ", dir), err);
  return absl::OkStatus();
}

// Encodes and writes `images` under `root`. (Threads do not help: encoding a 24x24 PNG
// takes microseconds, and creating files in one folder is serialized by the kernel.)
absl::Status WriteImages(const std::string& root,
                         const std::vector<PendingImage>& images) {
  for (const PendingImage& pending : images) {
    DUET_ASSIGN_OR_RETURN(std::string png, EncodePng(pending.image));
    DUET_RETURN_IF_ERROR(WriteFileUnsynced(JoinPath(root, pending.relative_path), png));
  }
  return absl::OkStatus();
}

size_t HashImage(const Image& image) {
  return std::hash<std::string_view>()(std::string_view(
      reinterpret_cast<const char*>(image.rgb.data()), image.rgb.size()));
}

std::string ImagePath(std::string_view set, int index) {
  return absl::StrFormat("images/%s/%06d.png", set, index);
}

Category Rotation(int i) { return kAllCategories[i % kNumCategories]; }

absl::Status CheckOptions(const MakeDataOptions& o) {
  if (o.out_dir.empty()) return absl::InvalidArgumentError("out_dir is empty");
  DUET_RETURN_IF_ERROR(ValidateWorldConfig(o.world));
  if (o.world.grid < 3) {
    return absl::InvalidArgumentError("the world needs a grid of at least 3x3");
  }
  for (auto [name, value] : {std::pair<const char*, int>{"sft_pairs", o.sft_pairs},
                             {"rl_prompts", o.rl_prompts},
                             {"rl_images", o.rl_images},
                             {"eval_per_category", o.eval_per_category},
                             {"tokenizer_images", o.tokenizer_images},
                             {"tokenizer_iterations", o.tokenizer_iterations}}) {
    if (value < 0) return absl::InvalidArgumentError(absl::StrCat(name, " is negative"));
  }
  if (!(o.mixed_fraction >= 0.0 && o.mixed_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mixed_fraction ", o.mixed_fraction, " is outside [0, 1]"));
  }
  const TokenLayout layout;
  const int64_t image_codes = layout.image_end - layout.image_begin;
  if (o.codebook_size < 2 || o.codebook_size > image_codes) {
    return absl::InvalidArgumentError(absl::StrCat("codebook_size ", o.codebook_size,
                                                   " is outside [2, ", image_codes, "]"));
  }
  if (o.eval_per_category > kMaxEvalPerCategory) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval_per_category ", o.eval_per_category, " > ", kMaxEvalPerCategory,
        ": too few two_objects prompts would remain for RL"));
  }
  return absl::OkStatus();
}

// The categories of `count` SFT pairs: pair i is mixed iff
// floor((i + 1) * mixed_fraction) > floor(i * mixed_fraction); the others rotate over
// the four evaluated categories.
std::vector<Category> SftCategories(int count, double mixed_fraction) {
  std::vector<Category> out;
  out.reserve(count);
  int rotation = 0;
  for (int i = 0; i < count; ++i) {
    const bool mixed =
        std::floor((i + 1) * mixed_fraction) > std::floor(i * mixed_fraction);
    out.push_back(mixed ? Category::kMixed : Rotation(rotation++));
  }
  return out;
}

std::vector<Category> RotatingCategories(int count) {
  std::vector<Category> out;
  out.reserve(count);
  for (int i = 0; i < count; ++i) out.push_back(Rotation(i));
  return out;
}

// Renders one scene per entry of `categories`, writes them as images/<set>/NNNNNN.png
// and returns one JSON record per image (with the canonical caption when
// `with_caption`). Every image's hash goes into `hashes`.
absl::StatusOr<std::vector<json>> MakeImageSet(
    const std::string& root, std::string_view set,
    const std::vector<Category>& categories, bool with_caption, const WorldConfig& world,
    std::mt19937_64& rng, std::unordered_set<size_t>* hashes) {
  const int count = static_cast<int>(categories.size());
  std::vector<json> records;
  for (int begin = 0; begin < count; begin += kWriteBatch) {
    std::vector<PendingImage> batch;
    for (int i = begin; i < std::min(count, begin + kWriteBatch); ++i) {
      const Category category = categories[i];
      const Scene scene = SampleScene(category, rng, world);
      PendingImage pending{ImagePath(set, i), Render(scene, world, rng())};
      hashes->insert(HashImage(pending.image));
      json record = {{"image", pending.relative_path},
                     {"category", std::string(CategoryName(category))}};
      if (with_caption) {
        DUET_ASSIGN_OR_RETURN(Caption caption, CanonicalCaption(scene));
        record["caption"] = FormatCaption(caption);
      }
      records.push_back(std::move(record));
      batch.push_back(std::move(pending));
    }
    DUET_RETURN_IF_ERROR(WriteImages(root, batch));
  }
  return records;
}

absl::Status WriteJsonl(const std::string& path, const std::vector<json>& records) {
  std::string out;
  for (const json& r : records) {
    out += r.dump();
    out += '\n';
  }
  return WriteFileAtomically(path, out);
}

// The hard understanding split (dataset.h) under `root`, rejecting images whose hash is
// in `avoid` (and duplicates within the split). Returns the number of records.
absl::StatusOr<size_t> WriteHardSplit(const std::string& root, const HardSplitOptions& o,
                                      std::unordered_set<size_t> avoid) {
  if (o.per_category < 1 || o.per_category > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hard split: per_category must be in [1, 1000], got ", o.per_category));
  }
  DUET_RETURN_IF_ERROR(ValidateWorldConfig(o.world));
  DUET_RETURN_IF_ERROR(MakeDirs(JoinPath(root, "images/eval_hard")));
  std::mt19937_64 rng(o.seed ^ kHardSplitSeedSalt);
  std::vector<json> records;
  std::vector<PendingImage> images;
  for (Category category : kHardSplitCategories) {
    for (int i = 0; i < o.per_category; ++i) {
      Scene scene;
      Image image;
      do {
        scene = SampleScene(category, rng, o.world);
        image = Render(scene, o.world, rng());
      } while (!avoid.insert(HashImage(image)).second);
      DUET_ASSIGN_OR_RETURN(Caption caption, CanonicalCaption(scene));
      const std::string path = ImagePath("eval_hard", static_cast<int>(images.size()));
      records.push_back({{"image", path},
                         {"caption", FormatCaption(caption)},
                         {"category", std::string(CategoryName(category))}});
      images.push_back({path, std::move(image)});
    }
  }
  DUET_RETURN_IF_ERROR(WriteImages(root, images));
  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kEvalUndHardFile), records));
  return records.size();
}

json PromptRecordJson(const Caption& caption) {
  return {{"prompt", FormatCaption(caption)},
          {"category", std::string(CategoryName(caption.category))}};
}

}  // namespace

absl::StatusOr<std::vector<PairRecord>> ReadPairs(const std::string& path) {
  const std::string folder = Folder(path);
  std::vector<PairRecord> records;
  DUET_RETURN_IF_ERROR(
      ForEachJsonLine(path, [&](int, const json& object) -> absl::Status {
        PairRecord r;
        DUET_ASSIGN_OR_RETURN(std::string image, GetString(object, "image"));
        DUET_ASSIGN_OR_RETURN(r.caption, GetString(object, "caption"));
        DUET_ASSIGN_OR_RETURN(r.parsed, ParseCaption(r.caption));
        DUET_ASSIGN_OR_RETURN(r.category, RecordCategory(object, r.parsed));
        r.image = Resolve(folder, image);
        records.push_back(std::move(r));
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<PromptRecord>> ReadPrompts(const std::string& path) {
  std::vector<PromptRecord> records;
  DUET_RETURN_IF_ERROR(
      ForEachJsonLine(path, [&](int, const json& object) -> absl::Status {
        PromptRecord r;
        DUET_ASSIGN_OR_RETURN(r.prompt, GetString(object, "prompt"));
        DUET_ASSIGN_OR_RETURN(r.parsed, ParseCaption(r.prompt));
        DUET_ASSIGN_OR_RETURN(r.category, RecordCategory(object, r.parsed));
        records.push_back(std::move(r));
        return absl::OkStatus();
      }));
  return records;
}

absl::StatusOr<std::vector<ImageRecord>> ReadImages(const std::string& path) {
  const std::string folder = Folder(path);
  std::vector<ImageRecord> records;
  DUET_RETURN_IF_ERROR(
      ForEachJsonLine(path, [&](int, const json& object) -> absl::Status {
        ImageRecord r;
        DUET_ASSIGN_OR_RETURN(std::string image, GetString(object, "image"));
        DUET_ASSIGN_OR_RETURN(std::string category, GetString(object, "category"));
        DUET_ASSIGN_OR_RETURN(r.category, CategoryFromName(category));
        r.image = Resolve(folder, image);
        records.push_back(std::move(r));
        return absl::OkStatus();
      }));
  return records;
}

absl::Status MakeData(const MakeDataOptions& o) {
  DUET_RETURN_IF_ERROR(CheckOptions(o));
  const std::string& root = o.out_dir;
  // A manifest from an earlier run must not vouch for a half-rewritten folder.
  std::error_code ignored;
  std::filesystem::remove(JoinPath(root, kManifestFile), ignored);
  for (const char* dir : {"tokenizer", "images/sft", "images/rl", "images/eval"}) {
    DUET_RETURN_IF_ERROR(MakeDirs(JoinPath(root, dir)));
  }
  std::mt19937_64 rng(o.seed);
  // Hashes of every image that is not an eval image; eval images must avoid them.
  std::unordered_set<size_t> train_hashes;

  // The image tokenizer, trained on its own fresh renders.
  std::vector<Image> tokenizer_images;
  tokenizer_images.reserve(o.tokenizer_images);
  for (int i = 0; i < o.tokenizer_images; ++i) {
    tokenizer_images.push_back(
        Render(SampleScene(Rotation(i), rng, o.world), o.world, rng()));
    train_hashes.insert(HashImage(tokenizer_images.back()));
  }
  DUET_ASSIGN_OR_RETURN(
      ImageTokenizer tokenizer,
      ImageTokenizer::Train(tokenizer_images, o.codebook_size, o.tokenizer_iterations,
                            /*seed=*/rng(), o.world));
  tokenizer_images = {};
  DUET_RETURN_IF_ERROR(tokenizer.Save(JoinPath(root, kCodebookFile)));

  // Training images: SFT pairs and RL understanding images.
  const std::vector<Category> sft_categories =
      SftCategories(o.sft_pairs, o.mixed_fraction);
  const int64_t sft_mixed =
      std::count(sft_categories.begin(), sft_categories.end(), Category::kMixed);
  DUET_ASSIGN_OR_RETURN(std::vector<json> sft,
                        MakeImageSet(root, "sft", sft_categories, /*with_caption=*/true,
                                     o.world, rng, &train_hashes));
  DUET_ASSIGN_OR_RETURN(
      std::vector<json> rl_images,
      MakeImageSet(root, "rl", RotatingCategories(o.rl_images), /*with_caption=*/false,
                   o.world, rng, &train_hashes));

  // Eval understanding pairs, rejecting any image identical to a training image.
  std::vector<json> eval_und;
  std::vector<PendingImage> eval_images;
  for (Category category : kAllCategories) {
    for (int i = 0; i < o.eval_per_category; ++i) {
      Scene scene;
      Image image;
      do {
        scene = SampleScene(category, rng, o.world);
        image = Render(scene, o.world, rng());
      } while (train_hashes.count(HashImage(image)) > 0);
      DUET_ASSIGN_OR_RETURN(Caption caption, CanonicalCaption(scene));
      const std::string path = ImagePath("eval", static_cast<int>(eval_images.size()));
      eval_und.push_back({{"image", path},
                          {"caption", FormatCaption(caption)},
                          {"category", std::string(CategoryName(category))}});
      eval_images.push_back({path, std::move(image)});
    }
  }
  DUET_RETURN_IF_ERROR(WriteImages(root, eval_images));

  // Eval generation prompts; two_objects and position ones are distinct and held out.
  std::vector<json> eval_gen;
  std::unordered_set<std::string> held_out;
  for (Category category : kAllCategories) {
    const bool hold_out =
        category == Category::kTwoObjects || category == Category::kPosition;
    for (int i = 0; i < o.eval_per_category; ++i) {
      Caption caption = SampleCaption(category, rng);
      while (hold_out && !held_out.insert(FormatCaption(caption)).second) {
        caption = SampleCaption(category, rng);
      }
      eval_gen.push_back(PromptRecordJson(caption));
    }
  }

  // RL generation prompts, avoiding the held-out strings.
  std::vector<json> rl_prompts;
  for (int i = 0; i < o.rl_prompts; ++i) {
    Caption caption = SampleCaption(Rotation(i), rng);
    while (held_out.count(FormatCaption(caption)) > 0) {
      caption = SampleCaption(Rotation(i), rng);
    }
    rl_prompts.push_back(PromptRecordJson(caption));
  }

  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kSftFile), sft));
  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kRlUndImagesFile), rl_images));
  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kRlGenPromptsFile), rl_prompts));
  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kEvalGenFile), eval_gen));
  DUET_RETURN_IF_ERROR(WriteJsonl(JoinPath(root, kEvalUndFile), eval_und));
  // The hard understanding split: its own random stream, so the files above do not
  // depend on it; its images avoid every training and standard-eval image.
  HardSplitOptions hard;
  hard.seed = o.seed;
  hard.world = o.world;
  std::unordered_set<size_t> avoid = std::move(train_hashes);
  for (const PendingImage& e : eval_images) avoid.insert(HashImage(e.image));
  DUET_ASSIGN_OR_RETURN(const size_t eval_und_hard,
                        WriteHardSplit(root, hard, std::move(avoid)));
  DUET_RETURN_IF_ERROR(SyncFolder(root));

  const WorldConfig& w = o.world;
  const json manifest = {
      {"seed", o.seed},
      {"mixed_fraction", o.mixed_fraction},
      {"world",
       {{"grid", w.grid},
        {"cell_px", w.cell_px},
        {"patch_px", w.patch_px},
        {"shape_px", w.shape_px},
        {"jitter_px", w.jitter_px},
        {"color_noise", w.color_noise}}},
      {"tokenizer",
       {{"codebook_size", o.codebook_size},
        {"training_images", o.tokenizer_images},
        {"iterations", o.tokenizer_iterations}}},
      {"counts",
       {{"sft_pairs", sft.size()},
        {"sft_mixed_pairs", sft_mixed},
        {"rl_gen_prompts", rl_prompts.size()},
        {"rl_und_images", rl_images.size()},
        {"eval_gen", eval_gen.size()},
        {"eval_und", eval_und.size()},
        {"eval_und_hard", eval_und_hard},
        {"eval_per_category", o.eval_per_category}}},
      {"files",
       {{"codebook", kCodebookFile},
        {"sft", kSftFile},
        {"rl_gen_prompts", kRlGenPromptsFile},
        {"rl_und_images", kRlUndImagesFile},
        {"eval_gen", kEvalGenFile},
        {"eval_und", kEvalUndFile},
        {"eval_und_hard", kEvalUndHardFile}}},
      {"held_out_prompt_categories", json::array({"two_objects", "position"})},
  };
  return WriteFileAtomically(JoinPath(root, kManifestFile), manifest.dump(2) + "\n");
}

absl::Status MakeHardUnderstandingSplit(const std::string& data_dir,
                                        const HardSplitOptions& options) {
  DUET_RETURN_IF_ERROR(ValidateWorldConfig(options.world));
  const int px = options.world.image_px();
  std::unordered_set<size_t> avoid;
  auto add = [&](const std::string& png) -> absl::Status {
    DUET_ASSIGN_OR_RETURN(Image image, ReadPng(png, px, px));
    avoid.insert(HashImage(image));
    return absl::OkStatus();
  };
  DUET_ASSIGN_OR_RETURN(std::vector<PairRecord> sft,
                        ReadPairs(JoinPath(data_dir, kSftFile)));
  for (const PairRecord& r : sft) DUET_RETURN_IF_ERROR(add(r.image));
  DUET_ASSIGN_OR_RETURN(std::vector<ImageRecord> rl,
                        ReadImages(JoinPath(data_dir, kRlUndImagesFile)));
  for (const ImageRecord& r : rl) DUET_RETURN_IF_ERROR(add(r.image));
  DUET_ASSIGN_OR_RETURN(std::vector<PairRecord> eval,
                        ReadPairs(JoinPath(data_dir, kEvalUndFile)));
  for (const PairRecord& r : eval) DUET_RETURN_IF_ERROR(add(r.image));
  DUET_ASSIGN_OR_RETURN(const size_t written,
                        WriteHardSplit(data_dir, options, std::move(avoid)));
  (void)written;
  return SyncFolder(data_dir);
}

}  // namespace duet::world
