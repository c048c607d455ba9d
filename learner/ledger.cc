#include "learner/ledger.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {

std::string LedgerLine(const LedgerEntry& entry) {
  const TrainedGroup& g = entry.group;
  return nlohmann::json({{"step", entry.step},
                         {"direction", std::string(TaskName(g.task))},
                         {"input", g.input},
                         {"item", g.item},
                         {"samples", g.samples}})
      .dump();
}

absl::StatusOr<LedgerEntry> ParseLedgerLine(const std::string& line) {
  const nlohmann::json j =
      nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  auto is_int = [&](const char* key) {
    return j.contains(key) && j[key].is_number_integer();
  };
  if (j.is_discarded() || !j.is_object() || !is_int("step") || !is_int("input") ||
      !is_int("samples") || !j.contains("direction") || !j["direction"].is_string() ||
      !j.contains("item") || !j["item"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("not a ledger line: ", line));
  }
  LedgerEntry e;
  const std::string direction = j["direction"].get<std::string>();
  if (direction == TaskName(Task::kGeneration)) {
    e.group.task = Task::kGeneration;
  } else if (direction == TaskName(Task::kUnderstanding)) {
    e.group.task = Task::kUnderstanding;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("ledger line with direction \"", direction, "\""));
  }
  e.step = j["step"].get<int64_t>();
  e.group.input = j["input"].get<int64_t>();
  e.group.item = j["item"].get<std::string>();
  e.group.samples = j["samples"].get<int64_t>();
  return e;
}

absl::StatusOr<std::vector<LedgerEntry>> ReadLedger(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) return std::vector<LedgerEntry>{};
  DUET_RETURN_IF_ERROR(text.status());
  std::vector<LedgerEntry> out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    ++line_number;
    absl::StatusOr<LedgerEntry> e = ParseLedgerLine(std::string(line));
    if (!e.ok())
      return absl::DataLossError(
          absl::StrCat(path, " line ", line_number, ": ", e.status().message()));
    out.push_back(*std::move(e));
  }
  return out;
}

absl::StatusOr<LedgerWriter> LedgerWriter::Open(const std::string& path,
                                                int64_t keep_through_step) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (text.ok()) {
    std::string kept;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      absl::StatusOr<LedgerEntry> e = ParseLedgerLine(std::string(line));
      if (e.ok() && e->step <= keep_through_step) absl::StrAppend(&kept, line, "\n");
    }
    if (kept != *text) DUET_RETURN_IF_ERROR(WriteFileAtomically(path, kept));
  } else if (!absl::IsNotFound(text.status())) {
    return text.status();
  }
  LedgerWriter writer(path);
  writer.out_.open(path, std::ios::app);
  if (!writer.out_)
    return absl::UnavailableError(absl::StrCat("cannot open ", path, " for appending"));
  return absl::StatusOr<LedgerWriter>(std::move(writer));
}

absl::Status LedgerWriter::Append(int64_t step, const std::vector<TrainedGroup>& groups) {
  for (const TrainedGroup& g : groups) out_ << LedgerLine({step, g}) << "\n";
  out_.flush();
  if (!out_) return absl::UnavailableError(absl::StrCat("cannot append to ", path_));
  return absl::OkStatus();
}

}  // namespace duet
