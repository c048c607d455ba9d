#include "tools/seed_report.h"

#include "absl/strings/str_format.h"
#include "tools/agreement.h"

namespace duet {
namespace {

using eval::Direction;

// Accuracy of each seed's report, for one category or (nullptr) overall.
std::vector<double> PerSeed(const std::vector<eval::ShapesEvalReport>& per_seed,
                            Direction d, const world::Category* category) {
  std::vector<double> v;
  for (const eval::ShapesEvalReport& r : per_seed)
    v.push_back(category ? r.Accuracy(d, *category) : r.Accuracy(d));
  return v;
}

}  // namespace

nlohmann::json SeedSpreadJson(const std::vector<eval::ShapesEvalReport>& per_seed,
                              const std::vector<uint64_t>& seeds) {
  nlohmann::json out = {{"seeds", seeds}};
  for (Direction d : {Direction::kGeneration, Direction::kUnderstanding}) {
    nlohmann::json per = nlohmann::json::object();
    auto add = [&](const std::string& name, const std::vector<double>& v) {
      const SeedSummary s = Summarize(v);
      per[name] = {
          {"per_seed", v}, {"mean", s.mean}, {"stddev", s.stddev}, {"ci95", s.ci95}};
    };
    for (world::Category c : world::kAllCategories)
      add(std::string(world::CategoryName(c)), PerSeed(per_seed, d, &c));
    add("overall", PerSeed(per_seed, d, nullptr));
    out[std::string(eval::DirectionName(d))] = per;
  }
  return out;
}

std::string SeedSpreadTable(const std::vector<eval::ShapesEvalReport>& per_seed) {
  auto cell = [](const std::vector<double>& v) {
    const SeedSummary s = Summarize(v);
    return absl::StrFormat("%.1f%% ±%.1f", 100 * s.mean, 100 * s.ci95);
  };
  std::string out =
      absl::StrFormat("%-12s %16s %16s   (%d seeds: mean ±95%% interval)\n", "category",
                      "generation", "understanding", static_cast<int>(per_seed.size()));
  auto row = [&](const std::string& name, const world::Category* c) {
    absl::StrAppendFormat(&out, "%-12s %16s %16s\n", name,
                          cell(PerSeed(per_seed, Direction::kGeneration, c)),
                          cell(PerSeed(per_seed, Direction::kUnderstanding, c)));
  };
  for (world::Category c : world::kAllCategories)
    row(std::string(world::CategoryName(c)), &c);
  row("overall", nullptr);
  return out;
}

}  // namespace duet
