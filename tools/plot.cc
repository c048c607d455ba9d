#include "tools/plot.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/eval/gallery.h"
#include "common/world/image.h"
#include "common/world/png_io.h"

namespace duet {
namespace {

void Line(world::Image& im, int x0, int y0, int x1, int y1, world::Rgb c) {
  const int steps = std::max({std::abs(x1 - x0), std::abs(y1 - y0), 1});
  for (int i = 0; i <= steps; ++i) {
    const int x = x0 + (x1 - x0) * i / steps, y = y0 + (y1 - y0) * i / steps;
    if (im.InBounds(x, y)) im.SetPixel(x, y, c);
  }
}

}  // namespace

absl::Status WriteLinePlot(const std::string& path, const std::string& title,
                           const std::vector<Series>& series) {
  constexpr int kW = 640, kH = 360, kLeft = 70, kRight = 20, kTop = 30, kBottom = 40;
  world::Image im(kW, kH);
  const world::Rgb white{230, 230, 230}, grey{90, 90, 90};
  double lo = INFINITY, hi = -INFINITY;
  size_t n = 0;
  for (const Series& s : series) {
    for (double v : s.values) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    n = std::max(n, s.values.size());
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) hi = lo + 1;
  const int pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  Line(im, kLeft, kTop, kLeft, kTop + ph, grey);
  Line(im, kLeft, kTop + ph, kLeft + pw, kTop + ph, grey);
  eval::DrawText(im, kLeft, 8, title, white);
  eval::DrawText(im, 4, kTop, absl::StrFormat("%.3f", hi), white);
  eval::DrawText(im, 4, kTop + ph - 8, absl::StrFormat("%.3f", lo), white);
  eval::DrawText(im, kLeft, kTop + ph + 8, "step 1", white);
  eval::DrawText(im, kLeft + pw - 60, kTop + ph + 8,
                 absl::StrFormat("step %d", static_cast<int>(n)), white);
  auto px = [&](size_t i) {
    return kLeft + (n > 1 ? static_cast<int>(pw * i / (n - 1)) : 0);
  };
  auto py = [&](double v) { return kTop + static_cast<int>(ph * (hi - v) / (hi - lo)); };
  int legend_x = kLeft + 150;
  for (const Series& s : series) {
    for (size_t i = 1; i < s.values.size(); ++i) {
      if (std::isfinite(s.values[i - 1]) && std::isfinite(s.values[i])) {
        Line(im, px(i - 1), py(s.values[i - 1]), px(i), py(s.values[i]), s.color);
      }
    }
    eval::DrawText(im, legend_x, kTop + ph + 24, s.name, s.color);
    legend_x += 8 * static_cast<int>(s.name.size()) + 24;
  }
  return world::WritePng(path, im);
}

std::vector<double> RunningMean(const std::vector<double>& values, size_t window) {
  std::vector<double> running;
  double sum = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    sum += values[i] - (i >= window ? values[i - window] : 0.0);
    running.push_back(sum / static_cast<double>(std::min(i + 1, window)));
  }
  return running;
}

std::string RewardTrendLine(const std::string& name, const std::vector<double>& values,
                            size_t window) {
  if (values.empty()) return "";
  if (values.size() == 1)
    return absl::StrFormat("%s self-reward: %.3f (one step, no trend)\n", name,
                           values[0]);
  const size_t n = std::min(window, values.size() / 2);
  auto mean = [](auto begin, auto end) {
    return std::accumulate(begin, end, 0.0) / static_cast<double>(end - begin);
  };
  return absl::StrFormat(
      "%s self-reward (mean of the first and of the last %d steps): %.3f -> %.3f\n", name,
      static_cast<int>(n), mean(values.begin(), values.begin() + n),
      mean(values.end() - n, values.end()));
}

}  // namespace duet
