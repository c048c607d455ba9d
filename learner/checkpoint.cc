#include "learner/checkpoint.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {
namespace fs = std::filesystem;

absl::Status WriteCheckpoint(const std::string& root, int64_t step,
                             const Transformer& model, const AdamW& optimizer,
                             const std::string& state_json, int64_t keep) {
  DUET_RETURN_IF_ERROR(MakeDirs(root));
  const std::string name = absl::StrFormat("step-%08d", step);
  const std::string final_dir = JoinPath(root, name);
  const std::string tmp_dir = JoinPath(root, absl::StrCat(".", name, ".tmp-", getpid()));
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  DUET_RETURN_IF_ERROR(model.Save(tmp_dir));
  DUET_RETURN_IF_ERROR(
      WriteSafetensors(JoinPath(tmp_dir, "optimizer.safetensors"), optimizer.State()));
  DUET_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(tmp_dir, "state.json"), state_json));
  fs::remove_all(final_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot publish checkpoint ", final_dir, ": ", ec.message()));
  DUET_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(root, "LATEST"), name + "\n"));
  // Prune older checkpoints (and temporary folders of crashed writers).
  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (absl::StartsWith(n, "step-") && n != name) steps.push_back(n);
    if (absl::StartsWith(n, ".step-")) fs::remove_all(entry.path(), ec);
  }
  std::sort(steps.begin(), steps.end());
  const int64_t excess = static_cast<int64_t>(steps.size()) - keep;
  for (int64_t i = 0; i < excess; ++i) fs::remove_all(JoinPath(root, steps[i]), ec);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Checkpoint>> RestoreLatestCheckpoint(const std::string& root,
                                                                  Transformer& model) {
  const std::string latest_path = JoinPath(root, "LATEST");
  if (!PathExists(latest_path)) return std::optional<Checkpoint>();
  DUET_ASSIGN_OR_RETURN(std::string latest, ReadFileToString(latest_path));
  std::string name(absl::StripAsciiWhitespace(latest));
  Checkpoint ckpt;
  ckpt.dir = JoinPath(root, name);
  if (!absl::StartsWith(name, "step-") || !absl::SimpleAtoi(name.substr(5), &ckpt.step)) {
    return absl::DataLossError(
        absl::StrCat(latest_path, " names '", name, "', not a checkpoint"));
  }
  DUET_ASSIGN_OR_RETURN(Transformer loaded, Transformer::Load(ckpt.dir));
  if (loaded.config().ToJson() != model.config().ToJson()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", ckpt.dir, " has a different model shape than this run"));
  }
  DUET_RETURN_IF_ERROR(model.LoadTensors(loaded.StateDict()));
  DUET_ASSIGN_OR_RETURN(SafetensorsFile opt,
                        ReadSafetensors(JoinPath(ckpt.dir, "optimizer.safetensors")));
  ckpt.optimizer = std::move(opt.tensors);
  DUET_ASSIGN_OR_RETURN(ckpt.state_json,
                        ReadFileToString(JoinPath(ckpt.dir, "state.json")));
  return std::optional<Checkpoint>(std::move(ckpt));
}

}  // namespace duet
