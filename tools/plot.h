#ifndef DUET_TOOLS_PLOT_H_
#define DUET_TOOLS_PLOT_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/world/scene.h"

namespace duet {

struct Series {
  std::string name;
  world::Rgb color;
  std::vector<double> values;  // one per step
};

// A line chart of `series` over steps as a PNG (axes with min/max labels, a legend).
absl::Status WriteLinePlot(const std::string& path, const std::string& title,
                           const std::vector<Series>& series);

// The mean of each step's last `window` values (fewer at the start). REQUIRES: window >
// 0.
std::vector<double> RunningMean(const std::vector<double>& values, size_t window);

// The summary's reward trend: "<name> self-reward (mean of the first and of the last N
// steps): a -> b", N at most `window` and at most half the steps, so that the two means
// never share a step; "<name> self-reward: a (one step, no trend)" for one step; "" for
// none. REQUIRES: window > 0.
std::string RewardTrendLine(const std::string& name, const std::vector<double>& values,
                            size_t window);

}  // namespace duet

#endif  // DUET_TOOLS_PLOT_H_
