#ifndef DUET_TOOLS_SEED_REPORT_H_
#define DUET_TOOLS_SEED_REPORT_H_

// ShapesEval over several evaluation seeds: each figure as the mean over the seeds, with
// the sample standard deviation and the 95% interval of the mean (tools/agreement.h).
//
// Thread-safety: pure functions.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/eval/oracle.h"

namespace duet {

// {"seeds": [...], "generation": {"single": {"per_seed": [accuracies], "mean": m,
//  "stddev": s, "ci95": h}, ..., "overall": {...}}, "understanding": {...}}
// REQUIRES: per_seed.size() == seeds.size().
nlohmann::json SeedSpreadJson(const std::vector<eval::ShapesEvalReport>& per_seed,
                              const std::vector<uint64_t>& seeds);

// An aligned table like ShapesEvalReport::FormatTable, one row per category and
// "overall", each cell "mean% ±ci95" (percentage points, the 95% interval of the mean).
std::string SeedSpreadTable(const std::vector<eval::ShapesEvalReport>& per_seed);

}  // namespace duet

#endif  // DUET_TOOLS_SEED_REPORT_H_
