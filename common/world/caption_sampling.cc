#include <algorithm>
#include <utility>
#include <vector>

#include "common/world/caption.h"
#include "common/world/random.h"

// Random captions and scenes of each category (SampleCaption, SampleScene,
// SampleSceneFor).

namespace duet::world {
namespace {

Description RandomDescription(std::mt19937_64& rng) {
  Description d;
  d.color = kAllColors[UniformInt(rng, 0, kNumColors - 1)];
  d.shape = kAllShapes[UniformInt(rng, 0, kNumShapes - 1)];
  return d;
}

// A uniformly random ordered pair of different descriptions.
std::pair<Description, Description> RandomDistinctPair(std::mt19937_64& rng) {
  Description a = RandomDescription(rng);
  Description b;
  do {
    b = RandomDescription(rng);
  } while (b == a);
  return {a, b};
}

// `n` distinct cells, uniformly at random, in random order.
std::vector<std::pair<int, int>> RandomCells(int n, int grid, std::mt19937_64& rng) {
  std::vector<std::pair<int, int>> cells;
  for (int r = 0; r < grid; ++r) {
    for (int c = 0; c < grid; ++c) cells.emplace_back(r, c);
  }
  // Partial Fisher-Yates: the first n entries are a uniform random sample.
  for (int i = 0; i < n; ++i) {
    std::swap(cells[i], cells[UniformInt(rng, i, static_cast<int>(cells.size()) - 1)]);
  }
  cells.resize(n);
  return cells;
}

// Two distinct positions along a line of `grid` cells, in random order.
std::pair<int, int> TwoDistinct(int grid, std::mt19937_64& rng) {
  const int x = UniformInt(rng, 0, grid - 1);
  const int y = (x + UniformInt(rng, 1, grid - 1)) % grid;
  return {x, y};
}

Object MakeObject(const Description& d, int row, int col) {
  return Object{d.color, d.shape, row, col};
}

}  // namespace

Scene SampleScene(Category category, std::mt19937_64& rng, const WorldConfig& config) {
  const int grid = config.grid;
  Scene scene;
  switch (category) {
    case Category::kSingle: {
      const Description d = RandomDescription(rng);
      scene.objects.push_back(
          MakeObject(d, UniformInt(rng, 0, grid - 1), UniformInt(rng, 0, grid - 1)));
      break;
    }
    case Category::kCounting: {
      const Description d = RandomDescription(rng);
      const int count = grid >= 3 ? UniformInt(rng, 2, 3) : 2;
      for (const auto& [r, c] : RandomCells(count, grid, rng)) {
        scene.objects.push_back(MakeObject(d, r, c));
      }
      break;
    }
    case Category::kTwoObjects: {
      const auto [a, b] = RandomDistinctPair(rng);
      const auto [ra, rb] = TwoDistinct(grid, rng);
      const auto [ca, cb] = TwoDistinct(grid, rng);
      scene.objects.push_back(MakeObject(a, ra, ca));
      scene.objects.push_back(MakeObject(b, rb, cb));
      break;
    }
    case Category::kPosition: {
      const auto [a, b] = RandomDistinctPair(rng);
      const bool same_row = UniformInt(rng, 0, 1) == 0;
      const int line = UniformInt(rng, 0, grid - 1);
      const auto [pa, pb] = TwoDistinct(grid, rng);
      if (same_row) {
        scene.objects.push_back(MakeObject(a, line, pa));
        scene.objects.push_back(MakeObject(b, line, pb));
      } else {
        scene.objects.push_back(MakeObject(a, pa, line));
        scene.objects.push_back(MakeObject(b, pb, line));
      }
      break;
    }
    case Category::kMixed:
      return SampleSceneFor(SampleCaption(Category::kMixed, rng), rng, config);
  }
  return scene;
}

Caption SampleCaption(Category category, std::mt19937_64& rng) {
  Caption c;
  c.category = category;
  switch (category) {
    case Category::kSingle:
      c.a = RandomDescription(rng);
      break;
    case Category::kCounting:
      c.count = UniformInt(rng, 2, 3);
      c.a = RandomDescription(rng);
      break;
    case Category::kTwoObjects:
      std::tie(c.a, c.b) = RandomDistinctPair(rng);
      break;
    case Category::kPosition:
      std::tie(c.a, c.b) = RandomDistinctPair(rng);
      c.relation = kAllRelations[UniformInt(rng, 0, 3)];
      break;
    case Category::kMixed:
      if (UniformInt(rng, 0, 1) == 0) {
        // A pair plus another kind, in either order.
        const auto [pair, other] = RandomDistinctPair(rng);
        c.phrases = {{pair, 2}, {other, 1}};
        if (UniformInt(rng, 0, 1) == 0) std::swap(c.phrases[0], c.phrases[1]);
      } else {
        // Three distinct kinds, in any order.
        const auto [x, y] = RandomDistinctPair(rng);
        Description z;
        do {
          z = RandomDescription(rng);
        } while (z == x || z == y);
        c.phrases = {{x, 1}, {y, 1}, {z, 1}};
      }
      break;
  }
  return c;
}

Scene SampleSceneFor(const Caption& caption, std::mt19937_64& rng,
                     const WorldConfig& config) {
  const int grid = config.grid;
  Scene scene;
  switch (caption.category) {
    case Category::kSingle:
    case Category::kCounting:
      for (const auto& [r, c] : RandomCells(caption.count, grid, rng)) {
        scene.objects.push_back(MakeObject(caption.a, r, c));
      }
      break;
    case Category::kTwoObjects: {
      const auto cells = RandomCells(2, grid, rng);
      scene.objects.push_back(MakeObject(caption.a, cells[0].first, cells[0].second));
      scene.objects.push_back(MakeObject(caption.b, cells[1].first, cells[1].second));
      break;
    }
    case Category::kPosition: {
      const int line = UniformInt(rng, 0, grid - 1);
      auto [lo, hi] = TwoDistinct(grid, rng);
      if (lo > hi) std::swap(lo, hi);
      // A takes the smaller index along the line for "left of" and "above".
      const bool a_first =
          caption.relation == Relation::kLeftOf || caption.relation == Relation::kAbove;
      const int pa = a_first ? lo : hi;
      const int pb = a_first ? hi : lo;
      if (caption.relation == Relation::kLeftOf ||
          caption.relation == Relation::kRightOf) {
        scene.objects.push_back(MakeObject(caption.a, line, pa));
        scene.objects.push_back(MakeObject(caption.b, line, pb));
      } else {
        scene.objects.push_back(MakeObject(caption.a, pa, line));
        scene.objects.push_back(MakeObject(caption.b, pb, line));
      }
      break;
    }
    case Category::kMixed: {
      const auto cells = RandomCells(caption.NumObjects(), grid, rng);
      size_t next = 0;
      for (const Phrase& p : caption.phrases) {
        for (int k = 0; k < p.count; ++k, ++next) {
          scene.objects.push_back(
              MakeObject(p.description, cells[next].first, cells[next].second));
        }
      }
      break;
    }
  }
  return scene;
}

}  // namespace duet::world
