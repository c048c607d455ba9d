#ifndef DUET_TOOLS_PLOT_H_
#define DUET_TOOLS_PLOT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "world/scene.h"

namespace duet {

struct Series {
  std::string name;
  world::Rgb color;
  std::vector<double> values;  // one per step
};

// A line chart of `series` over steps as a PNG (axes with min/max labels, a legend).
absl::Status WriteLinePlot(const std::string& path, const std::string& title,
                           const std::vector<Series>& series);

}  // namespace duet

#endif  // DUET_TOOLS_PLOT_H_
