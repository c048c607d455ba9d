// The codebook learning behind ImageTokenizer::Train, and the patch helpers that Train
// and Encode share. Private to common/world/: no other library includes
// common/world/internal/.

#include "common/world/internal/codebook.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace duet::world::internal {

// A pixel whose brightest channel is at least this is "on" (part of a shape).
constexpr uint8_t kOnThreshold = 64;
// Color groups with at most this many distinct on/off patch patterns get their codes by
// SelectPatterns; groups with more (data that is not flat shapes) by plain k-means.
constexpr size_t kMaxPatterns = 256;
// Rows of the distance matrix computed at once in a Lloyd step (bounds memory).
constexpr int64_t kDistanceChunk = 16384;

absl::Status CheckImageSize(const Image& image, const WorldConfig& config) {
  const int px = config.image_px();
  if (image.width != px || image.height != px || !image.IsValid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", image.width, "x", image.height,
                     " but Duet's world needs ", px, "x", px));
  }
  return absl::OkStatus();
}

// Copies patch `p` (row-major over patches) of `image` into `out` (patch_dim bytes in
// y, x, channel order).
void ExtractPatch(const Image& image, const WorldConfig& config, int p, uint8_t* out) {
  const int per_side = config.patches_per_side();
  const int x0 = (p % per_side) * config.patch_px;
  const int y0 = (p / per_side) * config.patch_px;
  const size_t row_bytes = static_cast<size_t>(config.patch_px) * 3;
  for (int y = 0; y < config.patch_px; ++y) {
    std::copy_n(&image.rgb[image.Offset(x0, y0 + y)], row_bytes, out + y * row_bytes);
  }
}

// The index in kAllColors of the palette color nearest to the mean of the patch's
// non-black pixels, or -1 for an all-black patch. Codes are learned and searched per
// group, so a patch never changes color.
int ColorGroup(const uint8_t* patch, int d) {
  double sum[3] = {0, 0, 0};
  int count = 0;
  for (int i = 0; i < d; i += 3) {
    if (patch[i] == 0 && patch[i + 1] == 0 && patch[i + 2] == 0) continue;
    for (int ch = 0; ch < 3; ++ch) sum[ch] += patch[i + ch];
    ++count;
  }
  if (count == 0) return -1;
  int best = 0;
  double best_dist = 1e18;
  for (int g = 0; g < kNumColors; ++g) {
    const Rgb p = PaletteRgb(kAllColors[g]);
    const double dr = sum[0] / count - p.r, dg = sum[1] / count - p.g,
                 db = sum[2] / count - p.b;
    const double dist = dr * dr + dg * dg + db * db;
    if (dist < best_dist) {
      best_dist = dist;
      best = g;
    }
  }
  return best;
}

// The on/off pattern of a patch of `d` bytes: bit p is set when pixel p is on.
// REQUIRES: d / 3 <= 64.
uint64_t PatternBits(const uint8_t* patch, int d) {
  uint64_t bits = 0;
  for (int p = 0; p < d / 3; ++p) {
    if (std::max({patch[3 * p], patch[3 * p + 1], patch[3 * p + 2]}) >= kOnThreshold) {
      bits |= uint64_t{1} << p;
    }
  }
  return bits;
}

int Hamming(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

double UniformDouble(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Index of a point drawn with probability proportional to `weights` (uniform if they are
// all zero).
int64_t SampleProportional(const float* weights, int64_t n, std::mt19937_64& rng) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += weights[i];
  if (!(total > 0)) return static_cast<int64_t>(UniformDouble(rng) * n) % n;
  const double target = UniformDouble(rng) * total;
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += weights[i];
    if (acc > target) return i;
  }
  return n - 1;
}

// ---- Pattern selection ------------------------------------------------------------

// A distinct on/off pattern and the patches that have exactly it.
struct Pattern {
  uint64_t bits = 0;
  int64_t count = 0;
  std::vector<double> color_sum;  // per value sums over those patches
};

// The distinct patterns of `n` patches of `d` bytes, most frequent first (ties: by bits).
std::vector<Pattern> CountPatterns(const uint8_t* patches, int64_t n, int d) {
  std::map<uint64_t, Pattern> by_bits;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* patch = patches + i * d;
    const uint64_t bits = PatternBits(patch, d);
    Pattern& pattern = by_bits[bits];
    if (pattern.count++ == 0) {
      pattern.bits = bits;
      pattern.color_sum.assign(d, 0.0);
    }
    for (int j = 0; j < d; ++j) pattern.color_sum[j] += patch[j];
  }
  std::vector<Pattern> patterns;
  for (auto& [bits, pattern] : by_bits) patterns.push_back(std::move(pattern));
  std::stable_sort(patterns.begin(), patterns.end(),
                   [](const Pattern& a, const Pattern& b) { return a.count > b.count; });
  return patterns;
}

// Chooses which `k` patterns keep a code. Encode draws a patch as its nearest code
// (for the codes of one color, nearest in Hamming distance of patterns), the black patch
// always being available, so a dropped pattern is drawn as its nearest survivor, with
// that many pixels wrong. An object survives a few wrong pixels, but not many gathered in
// its cell, so a cell costs the square of its patches' wrong pixels. Greedily drops,
// while more than k remain, the pattern whose loss adds the least count-weighted cost
// over all cells (ties: the rarer pattern). Returns the survivors' indices, ascending.
std::vector<size_t> SelectPatterns(const std::vector<Pattern>& patterns,
                                   const std::map<std::vector<uint64_t>, int64_t>& cells,
                                   int64_t k) {
  const size_t m = patterns.size();
  std::map<uint64_t, size_t> index_of;
  for (size_t p = 0; p < m; ++p) index_of[patterns[p].bits] = p;
  std::vector<int> hamming(m * m);
  for (size_t o = 0; o < m; ++o) {
    for (size_t q = 0; q < m; ++q) {
      hamming[o * m + q] = Hamming(patterns[o].bits, patterns[q].bits);
    }
  }
  // Cells as pattern indices (black patches never change), and the cells of each pattern.
  std::vector<std::vector<size_t>> cell_members;
  std::vector<int64_t> cell_count;
  std::vector<std::vector<size_t>> cells_of(m);
  for (const auto& [cell_bits, count] : cells) {
    std::vector<size_t> members;
    for (uint64_t b : cell_bits) {
      auto it = index_of.find(b);
      if (b != 0 && it != index_of.end()) members.push_back(it->second);
    }
    if (members.empty()) continue;
    for (size_t o : members) cells_of[o].push_back(cell_members.size());
    cell_members.push_back(std::move(members));
    cell_count.push_back(count);
  }

  std::vector<bool> alive(m, true);
  size_t alive_count = m;
  // Wrong pixels when pattern o is drawn as its nearest live code other than `skip`
  // (black, popcount(o) pixels away, is always live).
  auto wrong_pixels = [&](size_t o, size_t skip) {
    int nearest = __builtin_popcountll(patterns[o].bits);
    for (size_t q = 0; q < m; ++q) {
      if (alive[q] && q != skip) nearest = std::min(nearest, hamming[o * m + q]);
    }
    return nearest;
  };
  std::vector<int64_t> now(m), delta(m, 0);
  std::vector<size_t> cell_stamp(cell_members.size(), m);  // last p that costed a cell
  while (static_cast<int64_t>(alive_count) > k) {
    for (size_t o = 0; o < m; ++o) now[o] = wrong_pixels(o, /*skip=*/m);
    size_t best = m;
    int64_t best_cost = INT64_MAX;
    for (size_t p = 0; p < m; ++p) {
      if (!alive[p]) continue;
      // Only the patterns for which p is a nearest live code change.
      std::vector<size_t> moved;
      for (size_t o = 0; o < m; ++o) {
        if (hamming[o * m + p] != now[o]) continue;
        delta[o] = wrong_pixels(o, /*skip=*/p) - now[o];
        if (delta[o] != 0) moved.push_back(o);
      }
      int64_t cost = 0;
      for (size_t o : moved) {
        for (size_t c : cells_of[o]) {
          if (cell_stamp[c] == p) continue;
          cell_stamp[c] = p;
          int64_t before = 0, after = 0;
          for (size_t member : cell_members[c]) {
            before += now[member];
            after += now[member] + delta[member];
          }
          cost += cell_count[c] * (after * after - before * before);
        }
      }
      for (size_t o : moved) delta[o] = 0;
      if (cost <= best_cost) {
        best_cost = cost;
        best = p;
      }
    }
    alive[best] = false;
    --alive_count;
    std::fill(cell_stamp.begin(), cell_stamp.end(), m);
  }
  std::vector<size_t> survivors;
  for (size_t p = 0; p < m; ++p) {
    if (alive[p]) survivors.push_back(p);
  }
  return survivors;
}

// ---- k-means ----------------------------------------------------------------------

// k-means over the rows of `x` [n, d] with `k` centers, starting from `seeds` (at most k
// rows) and completing them by k-means++ sampling; then up to `iterations` Lloyd steps
// (stopping when assignments settle), re-seeding empty clusters with the points farthest
// from their centers. Returns the centers [k, d] and each point's nearest center [n].
// REQUIRES: 1 <= k <= n. Throws (torch) on internal failure.
std::pair<torch::Tensor, torch::Tensor> KMeans(const torch::Tensor& x,
                                               const torch::Tensor& seeds, int64_t k,
                                               int iterations, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const int64_t d = x.size(1);
  const torch::Tensor x_norm = (x * x).sum(1);

  torch::Tensor centers = torch::empty({k, d}, torch::kFloat32);
  int64_t have = std::min<int64_t>(seeds.size(0), k);
  torch::Tensor min_dist;
  if (have > 0) {
    centers.slice(0, 0, have).copy_(seeds.slice(0, 0, have));
    min_dist = std::get<0>(torch::cdist(x, centers.slice(0, 0, have)).pow(2).min(1));
  } else {
    const int64_t first = static_cast<int64_t>(UniformDouble(rng) * n) % n;
    centers[0].copy_(x[first]);
    min_dist = (x - x[first]).pow(2).sum(1);
    have = 1;
  }
  for (int64_t c = have; c < k; ++c) {
    const int64_t i = SampleProportional(min_dist.data_ptr<float>(), n, rng);
    centers[c].copy_(x[i]);
    min_dist = torch::minimum(min_dist, (x - x[i]).pow(2).sum(1));
  }

  // Assignment step: squared distances |x|^2 - 2 x.c + |c|^2, in row chunks; fills
  // min_dist and returns the nearest center of every point.
  auto assign_points = [&] {
    const torch::Tensor c_norm = (centers * centers).sum(1);
    torch::Tensor nearest = torch::empty({n}, torch::kInt64);
    for (int64_t begin = 0; begin < n; begin += kDistanceChunk) {
      const int64_t end = std::min(n, begin + kDistanceChunk);
      const torch::Tensor dist = torch::addmm(c_norm.unsqueeze(0), x.slice(0, begin, end),
                                              centers.t(), /*beta=*/1, /*alpha=*/-2) +
                                 x_norm.slice(0, begin, end).unsqueeze(1);
      auto [best, index] = dist.min(/*dim=*/1);
      min_dist.slice(0, begin, end).copy_(best);
      nearest.slice(0, begin, end).copy_(index);
    }
    return nearest;
  };

  torch::Tensor assign;
  for (int it = 0; it < iterations; ++it) {
    torch::Tensor new_assign = assign_points();
    if (assign.defined() && torch::equal(assign, new_assign)) break;
    assign = new_assign;

    // Update step: the mean of each cluster's points.
    const torch::Tensor sums =
        torch::zeros({k, d}, torch::kFloat32).index_add_(0, assign, x);
    const torch::Tensor counts = torch::bincount(assign, /*weights=*/{}, /*minlength=*/k);
    const int64_t* count = counts.data_ptr<int64_t>();
    std::vector<int64_t> empty;
    for (int64_t c = 0; c < k; ++c) {
      if (count[c] > 0) {
        centers[c].copy_(sums[c] / static_cast<float>(count[c]));
      } else {
        empty.push_back(c);
      }
    }
    if (!empty.empty()) {
      const torch::Tensor far =
          std::get<1>(torch::topk(min_dist, static_cast<int64_t>(empty.size())));
      for (size_t e = 0; e < empty.size(); ++e) {
        centers[empty[e]].copy_(x[far[e].item<int64_t>()]);
      }
    }
  }
  return {centers, assign_points()};
}

// Splits `total` codes among groups of `sizes` points in proportion to their sizes
// (largest remainder), never giving a group more codes than points.
// REQUIRES: total <= sum(sizes).
std::vector<int64_t> AllocateCodes(const std::vector<int64_t>& sizes, int64_t total) {
  std::vector<int64_t> alloc(sizes.size(), 0);
  int64_t left = total;
  while (left > 0) {
    int64_t open_points = 0;
    for (size_t g = 0; g < sizes.size(); ++g) {
      if (alloc[g] < sizes[g]) open_points += sizes[g];
    }
    std::vector<std::pair<double, size_t>> remainders;
    int64_t given = 0;
    for (size_t g = 0; g < sizes.size(); ++g) {
      if (alloc[g] >= sizes[g]) continue;
      const double share = static_cast<double>(left) * sizes[g] / open_points;
      const int64_t whole = std::min(static_cast<int64_t>(share), sizes[g] - alloc[g]);
      alloc[g] += whole;
      given += whole;
      remainders.emplace_back(-(share - static_cast<double>(whole)), g);
    }
    std::sort(remainders.begin(), remainders.end());
    for (const auto& [unused, g] : remainders) {
      if (given == left) break;
      if (alloc[g] < sizes[g]) {
        ++alloc[g];
        ++given;
      }
    }
    left -= given;
  }
  return alloc;
}

// The `k` codes of one color group (k * d floats in [0, 1]). Patches of flat-colored
// shapes have few distinct on/off patterns: each pattern that SelectPatterns keeps (all
// of them if they fit) becomes a crisp code, its on pixels colored with the mean color of
// the patches having exactly it, and codes left over go to k-means++ samples of the
// patches. Groups with more patterns get k-means with `iterations` Lloyd steps.
// REQUIRES: 1 <= k <= number of patches; d / 3 <= 64. Throws (torch) on failure.
std::vector<float> LearnGroupCodes(const GroupData& group, int d, int64_t k,
                                   int iterations, std::mt19937_64& rng) {
  const int64_t n = static_cast<int64_t>(group.patches.size()) / d;
  const torch::Tensor x =
      torch::from_blob(const_cast<uint8_t*>(group.patches.data()), {n, d}, torch::kUInt8)
          .to(torch::kFloat32)
          .div_(255.0f);
  torch::Tensor seeds = torch::zeros({0, d});
  const std::vector<Pattern> patterns = CountPatterns(group.patches.data(), n, d);
  if (patterns.size() <= kMaxPatterns) {
    std::vector<size_t> selected;
    if (static_cast<int64_t>(patterns.size()) <= k) {
      for (size_t p = 0; p < patterns.size(); ++p) selected.push_back(p);
    } else {
      selected = SelectPatterns(patterns, group.cells, k);
    }
    seeds = torch::zeros({static_cast<int64_t>(selected.size()), d});
    float* out = seeds.data_ptr<float>();
    for (size_t c = 0; c < selected.size(); ++c) {
      const Pattern& pattern = patterns[selected[c]];
      for (int j = 0; j < d; ++j) {
        if (pattern.bits >> (j / 3) & 1) {
          out[c * d + j] =
              static_cast<float>(pattern.color_sum[j] / pattern.count / 255.0);
        }
      }
    }
    iterations = 0;  // Lloyd steps would blur the crisp codes.
  }
  const torch::Tensor centers = KMeans(x, seeds, k, iterations, rng).first.contiguous();
  return std::vector<float>(centers.data_ptr<float>(),
                            centers.data_ptr<float>() + centers.numel());
}

// Rounds `centers` to 8-bit values and nudges duplicates (one channel step at a time)
// until all entries differ, so every code is the unique nearest entry to its own decode.
std::vector<uint8_t> QuantizeDistinct(const std::vector<float>& centers, int k, int d) {
  std::vector<uint8_t> q(centers.size());
  for (size_t i = 0; i < centers.size(); ++i) {
    q[i] = static_cast<uint8_t>(std::lround(std::clamp(centers[i], 0.0f, 1.0f) * 255.0f));
  }
  std::set<std::vector<uint8_t>> seen;
  for (int c = 0; c < k; ++c) {
    std::vector<uint8_t> entry(q.begin() + static_cast<size_t>(c) * d,
                               q.begin() + static_cast<size_t>(c + 1) * d);
    for (int64_t step = 0; seen.count(entry) > 0; ++step) {
      uint8_t& v = entry[step % d];
      v = v < 255 ? v + 1 : v - 1;
    }
    std::copy(entry.begin(), entry.end(), q.begin() + static_cast<size_t>(c) * d);
    seen.insert(std::move(entry));
  }
  return q;
}

}  // namespace duet::world::internal
