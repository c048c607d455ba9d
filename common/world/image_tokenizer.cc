#include "common/world/image_tokenizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model/safetensors.h"
#include "common/world/internal/codebook.h"

namespace duet::world {

using internal::AllocateCodes;
using internal::CheckImageSize;
using internal::ColorGroup;
using internal::ExtractPatch;
using internal::GroupData;
using internal::LearnGroupCodes;
using internal::PatternBits;
using internal::QuantizeDistinct;

ImageTokenizer::ImageTokenizer(const WorldConfig& config, int codebook_size,
                               std::vector<float> codebook)
    : config_(config), codebook_size_(codebook_size), codebook_(std::move(codebook)) {
  codebook_u8_.resize(codebook_.size());
  for (size_t i = 0; i < codebook_.size(); ++i) {
    codebook_u8_[i] = static_cast<uint8_t>(std::lround(codebook_[i] * 255.0f));
    codebook_[i] = static_cast<float>(codebook_u8_[i]) / 255.0f;
  }
  group_codes_.resize(kNumColors + 1);
  for (int c = 0; c < codebook_size_; ++c) {
    all_codes_.push_back(c);
    const int group =
        ColorGroup(&codebook_u8_[static_cast<size_t>(c) * patch_dim()], patch_dim());
    // Black codes are candidates for every patch; the others only for their group's.
    if (group < 0) {
      for (std::vector<int>& codes : group_codes_) codes.push_back(c);
    } else {
      group_codes_[group + 1].push_back(c);
    }
  }
}

absl::StatusOr<ImageTokenizer> ImageTokenizer::Train(const std::vector<Image>& images,
                                                     int codebook_size, int iterations,
                                                     uint64_t seed,
                                                     const WorldConfig& config) {
  DUET_RETURN_IF_ERROR(ValidateWorldConfig(config));
  if (codebook_size < 2 || codebook_size > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("codebook_size ", codebook_size, " is outside [2, 65536]"));
  }
  if (iterations < 0) {
    return absl::InvalidArgumentError(absl::StrCat("iterations ", iterations, " < 0"));
  }
  if (config.patch_px > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("patch_px ", config.patch_px, " > 8 is not supported"));
  }
  const int d = config.patch_px * config.patch_px * 3;
  const int num_patches = config.num_patches();
  // The patches of each grid cell (row-major); with cells that are not whole patches,
  // every patch is a cell of its own.
  std::vector<std::vector<int>> cell_patches;
  if (config.cell_px % config.patch_px == 0) {
    const int per_cell = config.cell_px / config.patch_px;
    const int per_side = config.patches_per_side();
    for (int r = 0; r < config.grid; ++r) {
      for (int c = 0; c < config.grid; ++c) {
        std::vector<int> members;
        for (int i = 0; i < per_cell; ++i) {
          for (int j = 0; j < per_cell; ++j) {
            members.push_back((r * per_cell + i) * per_side + c * per_cell + j);
          }
        }
        cell_patches.push_back(std::move(members));
      }
    }
  } else {
    for (int p = 0; p < num_patches; ++p) cell_patches.push_back({p});
  }

  std::vector<GroupData> groups(kNumColors);
  std::vector<uint8_t> cell_bytes;
  std::vector<int> patch_group;
  for (size_t i = 0; i < images.size(); ++i) {
    if (absl::Status s = CheckImageSize(images[i], config); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("training image ", i, ": ", s.message()));
    }
    for (const std::vector<int>& members : cell_patches) {
      cell_bytes.resize(members.size() * d);
      patch_group.clear();
      for (size_t j = 0; j < members.size(); ++j) {
        uint8_t* patch = &cell_bytes[j * d];
        ExtractPatch(images[i], config, members[j], patch);
        patch_group.push_back(ColorGroup(patch, d));
        if (patch_group.back() >= 0) {
          std::vector<uint8_t>& out = groups[patch_group.back()].patches;
          out.insert(out.end(), patch, patch + d);
        }
      }
      for (int g = 0; g < kNumColors; ++g) {
        std::vector<uint64_t> key(members.size(), 0);
        bool present = false;
        for (size_t j = 0; j < members.size(); ++j) {
          if (patch_group[j] != g) continue;
          key[j] = PatternBits(&cell_bytes[j * d], d);
          present = true;
        }
        if (present) ++groups[g].cells[key];
      }
    }
  }
  std::vector<int64_t> sizes(kNumColors);
  int64_t n = 0;
  for (int g = 0; g < kNumColors; ++g) {
    sizes[g] = static_cast<int64_t>(groups[g].patches.size()) / d;
    n += sizes[g];
  }
  if (n < codebook_size - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", images.size(), " training images hold ", n,
                     " non-black patches; a codebook of ", codebook_size,
                     " needs at least ", codebook_size - 1));
  }
  // Code 0 is the black patch; the others are split among the color groups.
  const std::vector<int64_t> alloc = AllocateCodes(sizes, codebook_size - 1);
  std::vector<float> codebook(static_cast<size_t>(d), 0.0f);
  std::mt19937_64 rng(seed);
  try {
    torch::NoGradGuard no_grad;
    for (int g = 0; g < kNumColors; ++g) {
      if (alloc[g] == 0) continue;
      const std::vector<float> codes =
          LearnGroupCodes(groups[g], d, alloc[g], iterations, rng);
      codebook.insert(codebook.end(), codes.begin(), codes.end());
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("codebook training failed: ", e.what()));
  }
  const std::vector<uint8_t> q = QuantizeDistinct(codebook, codebook_size, d);
  for (size_t i = 0; i < q.size(); ++i) codebook[i] = static_cast<float>(q[i]) / 255.0f;
  return ImageTokenizer(config, codebook_size, std::move(codebook));
}

absl::StatusOr<ImageTokenizer> ImageTokenizer::FromCodebook(std::vector<float> codebook,
                                                            int codebook_size,
                                                            const WorldConfig& config) {
  DUET_RETURN_IF_ERROR(ValidateWorldConfig(config));
  const size_t d = static_cast<size_t>(config.patch_px) * config.patch_px * 3;
  if (codebook_size < 1 || codebook.size() != static_cast<size_t>(codebook_size) * d) {
    return absl::InvalidArgumentError(
        absl::StrCat("a codebook of ", codebook_size, " entries of ", d, " floats needs ",
                     codebook_size * d, " floats, got ", codebook.size()));
  }
  for (size_t i = 0; i < codebook.size(); ++i) {
    if (!(codebook[i] >= 0.0f && codebook[i] <= 1.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("codebook entry ", i / d, " holds ",
                                                     codebook[i],
                                                     ", outside the pixel range [0, 1]"));
    }
  }
  return ImageTokenizer(config, codebook_size, std::move(codebook));
}

absl::Status ImageTokenizer::Save(const std::string& path) const {
  TensorMap tensors;
  try {
    tensors["codebook"] =
        torch::from_blob(const_cast<float*>(codebook_.data()),
                         {codebook_size_, static_cast<int64_t>(patch_dim())},
                         torch::kFloat32)
            .clone();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot build codebook tensor: ", e.what()));
  }
  const MetadataMap metadata = {{"patch_px", absl::StrCat(config_.patch_px)},
                                {"grid", absl::StrCat(config_.grid)},
                                {"cell_px", absl::StrCat(config_.cell_px)}};
  return WriteSafetensors(path, tensors, metadata);
}

absl::StatusOr<ImageTokenizer> ImageTokenizer::Load(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not an image tokenizer: ", what));
  };
  WorldConfig config;
  for (auto [key, field] : {std::pair<const char*, int*>{"patch_px", &config.patch_px},
                            {"grid", &config.grid},
                            {"cell_px", &config.cell_px}}) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end())
      return invalid(absl::StrCat("no \"", key, "\" metadata"));
    if (!absl::SimpleAtoi(it->second, field)) {
      return invalid(
          absl::StrCat("metadata \"", key, "\" is \"", it->second, "\", not an integer"));
    }
  }
  if (absl::Status s = ValidateWorldConfig(config); !s.ok()) return invalid(s.ToString());
  auto it = file.tensors.find("codebook");
  if (it == file.tensors.end()) return invalid("no \"codebook\" tensor");
  const torch::Tensor& t = it->second;
  const int64_t d = static_cast<int64_t>(config.patch_px) * config.patch_px * 3;
  if (t.scalar_type() != torch::kFloat32) {
    return invalid(absl::StrCat("\"codebook\" has dtype ", c10::toString(t.scalar_type()),
                                ", expected F32"));
  }
  if (t.dim() != 2 || t.size(1) != d || t.size(0) < 1 || t.size(0) > 65536) {
    return invalid(absl::StrCat("\"codebook\" has shape ", c10::str(t.sizes()),
                                ", expected [K, ", d,
                                "] with 1 <= K <= 65536 for patch_px ", config.patch_px));
  }
  const torch::Tensor c = t.contiguous();
  std::vector<float> codebook(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  absl::StatusOr<ImageTokenizer> tok =
      FromCodebook(std::move(codebook), static_cast<int>(t.size(0)), config);
  if (!tok.ok()) return invalid(std::string(tok.status().message()));
  return tok;
}

absl::StatusOr<std::vector<int>> ImageTokenizer::Encode(const Image& image) const {
  DUET_RETURN_IF_ERROR(CheckImageSize(image, config_));
  const int d = patch_dim();
  std::vector<uint8_t> patch(d);
  std::vector<int> codes(num_tokens());
  for (int p = 0; p < num_tokens(); ++p) {
    ExtractPatch(image, config_, p, patch.data());
    const int group = ColorGroup(patch.data(), d);
    const std::vector<int>& candidates =
        group_codes_[group + 1].empty() ? all_codes_ : group_codes_[group + 1];
    int best = 0;
    int32_t best_dist = INT32_MAX;
    for (size_t j = 0; j < candidates.size() && best_dist > 0; ++j) {
      const int c = candidates[j];
      const uint8_t* entry = &codebook_u8_[static_cast<size_t>(c) * d];
      int32_t dist = 0;
      for (int i = 0; i < d; ++i) {
        const int32_t diff = static_cast<int32_t>(patch[i]) - entry[i];
        dist += diff * diff;
      }
      if (dist < best_dist) {
        best_dist = dist;
        best = c;
      }
    }
    codes[p] = best;
  }
  return codes;
}

absl::StatusOr<Image> ImageTokenizer::Decode(const std::vector<int>& codes) const {
  if (static_cast<int>(codes.size()) != num_tokens()) {
    return absl::InvalidArgumentError(
        absl::StrCat("an image is ", num_tokens(), " codes, got ", codes.size()));
  }
  const int px = config_.image_px();
  const int per_side = config_.patches_per_side();
  const size_t row_bytes = static_cast<size_t>(config_.patch_px) * 3;
  Image image(px, px);
  for (int p = 0; p < num_tokens(); ++p) {
    if (codes[p] < 0 || codes[p] >= codebook_size_) {
      return absl::OutOfRangeError(absl::StrCat("code ", p, " is ", codes[p],
                                                ", outside the codebook [0, ",
                                                codebook_size_, ")"));
    }
    const uint8_t* entry = &codebook_u8_[static_cast<size_t>(codes[p]) * patch_dim()];
    const int x0 = (p % per_side) * config_.patch_px;
    const int y0 = (p / per_side) * config_.patch_px;
    for (int y = 0; y < config_.patch_px; ++y) {
      std::copy_n(entry + y * row_bytes, row_bytes, &image.rgb[image.Offset(x0, y0 + y)]);
    }
  }
  return image;
}

absl::StatusOr<std::vector<std::vector<int>>> ImageTokenizer::EncodeBatch(
    const std::vector<Image>& images) const {
  std::vector<std::vector<int>> out;
  out.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    absl::StatusOr<std::vector<int>> codes = Encode(images[i]);
    if (!codes.ok()) {
      return absl::Status(codes.status().code(),
                          absl::StrCat("image ", i, ": ", codes.status().message()));
    }
    out.push_back(*std::move(codes));
  }
  return out;
}

absl::StatusOr<std::vector<Image>> ImageTokenizer::DecodeBatch(
    const std::vector<std::vector<int>>& codes) const {
  std::vector<Image> out;
  out.reserve(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) {
    absl::StatusOr<Image> image = Decode(codes[i]);
    if (!image.ok()) {
      return absl::Status(image.status().code(),
                          absl::StrCat("codes ", i, ": ", image.status().message()));
    }
    out.push_back(*std::move(image));
  }
  return out;
}

}  // namespace duet::world
