// `duet local`: Duet's main job on one machine. Evaluates the base model, starts a
// learner and the rollout and scorer worker processes on loopback (each a real binary,
// talking gRPC and joining one Gloo group), trains the recipe, evaluates the result, and
// writes a report folder:
//   <out>/report/summary.md        before/after ShapesEval tables, timings
//   <out>/report/before/, after/   report.json and gallery.png of each evaluation
//   <out>/report/rewards_<direction>.png  self-reward curve of each trained direction
//   <out>/metrics.jsonl            one line per step (from the learner)
//   <out>/ledger.jsonl             one line per prompt group trained on (from the
//   learner) <out>/pool.json                the desired worker counts; `duet pool`
//   changes them <out>/pool_status.json         the running pools, while the run goes on
//   <out>/logs/<role>-<i>.log      each worker's log; logs/learner.log the learner's (its
//                                  progress lines also reach the terminal)
// duet local is the pools' controller: about every 250 ms it starts or stops worker
// processes to match pool.json and replaces a worker that died (tools/worker_pool.h).
// Ctrl-C / SIGTERM stops the learner at the end of its step (it checkpoints), then the
// workers; a second one aborts the learner at once. A stopped run skips the "after"
// evaluation, says how to resume and exits 128 + the signal (130 for Ctrl-C); `--resume`
// continues it.
// The run folder is never lost by mistake: the recipe, the model and the data are checked
// before --out is touched; a folder that holds a run is refused unless --resume or
// --overwrite; and a job holds <out>/.lock for its life (tools/run_folder.h), so that a
// second duet local on the same folder is refused, naming the holder.

#include <fcntl.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/base/file_util.h"
#include "common/base/signals.h"
#include "common/base/status_macros.h"
#include "common/world/bundle.h"
#include "common/world/dataset.h"
#include "learner/recipe.h"
#include "learner/rl_data.h"
#include "learner/step_record.h"
#include "tools/commands.h"
#include "tools/plot.h"
#include "tools/process.h"
#include "tools/run_folder.h"
#include "tools/shapes_eval.h"
#include "tools/worker_pool.h"

DECLARE_string(model);
DECLARE_string(data);
DECLARE_string(out);

DEFINE_string(recipe, "configs/recipes/default.yaml", "local: the run's YAML recipe");
DEFINE_int32(rollout_workers, duet::Recipe().rollout_workers,
             "local: rollout worker processes (recipe.workers.rollout)");
DEFINE_int32(scorer_workers, duet::Recipe().scorer_workers,
             "local: scorer worker processes (recipe.workers.scorer)");
DEFINE_int64(local_steps, -1, "local: override the recipe's steps (-1: keep)");
DEFINE_int64(rl_seed, -1, "local: override the recipe's seed (-1: keep)");
DEFINE_bool(resume, false, "local: continue the run in --out from its last checkpoint");
DEFINE_bool(
    overwrite, false,
    "local: start afresh in an --out that holds a run, deleting its checkpoints, model, "
    "metrics.jsonl, ledger.jsonl and report (without it or --resume, such an --out is "
    "refused)");
DEFINE_string(
    bin_dir, "",
    "local: folder of duet-learner/duet-rollout/duet-scorer (default: next to duet)");
DEFINE_int32(
    metrics_base_port, 0,
    "local: serve /metrics on 127.0.0.1: the learner on this port, the i-th worker "
    "started (from 0, "
    "replacements and `duet pool` additions included) on port + 1 + i, and write "
    "<out>/prometheus_targets.json (Prometheus file_sd); 0: off");

namespace duet {
namespace {

// Starts the role binaries of a duet local run, each logging to <logs>/<name>.log.
class LocalLauncher : public WorkerLauncher {
 public:
  LocalLauncher(const Recipe& recipe, std::string target, std::string token_file,
                std::string logs)
      : recipe_(recipe),
        target_(std::move(target)),
        token_file_(std::move(token_file)),
        logs_(std::move(logs)) {}

  absl::StatusOr<pid_t> Start(PoolRole role, const std::string& name, int slot) override {
    const bool rollout = role == PoolRole::kRollout;
    std::vector<std::string> args = {
        FindBinary(FLAGS_bin_dir, rollout ? "duet-rollout" : "duet-scorer",
                   rollout ? "rollout" : "scorer"),
        "--learner=" + target_, "--model=" + recipe_.model,
        "--auth_token_file=" + token_file_, "--name=" + name};
    if (FLAGS_metrics_base_port > 0) {
      args.push_back(absl::StrCat("--metrics_address=127.0.0.1:",
                                  FLAGS_metrics_base_port + 1 + slot));
    }
    // Nothing of the recipe: the learner sends the scorers its rewards at registration,
    // so a worker's command line is the same here, on Kubernetes and under Slurm.
    return Spawn(args, JoinPath(logs_, name + ".log"));
  }
  void Signal(pid_t pid, int signo) override { kill(pid, signo); }
  std::optional<int> Poll(pid_t pid) override {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno == ECHILD) return 0;  // not ours any more (reaped elsewhere)
    return std::nullopt;
  }

 private:
  const Recipe& recipe_;
  const std::string target_;
  const std::string token_file_;
  const std::string logs_;
};

// <out>/prometheus_targets.json (Prometheus file_sd, the format deploy/prometheus/
// prometheus.yml reads): the learner on `base`, each worker on base + 1 + its slot; one
// target group per role, rewritten as the pools change.
absl::Status WritePrometheusTargets(const std::string& out, int base,
                                    const WorkerPool& pool) {
  nlohmann::json groups = nlohmann::json::array();
  groups.push_back({{"targets", {absl::StrCat("127.0.0.1:", base)}},
                    {"labels", {{"job", "duet-learner"}}}});
  nlohmann::json rollouts = nlohmann::json::array(), scorers = nlohmann::json::array();
  for (const PoolMember& m : pool.members()) {
    (m.role == PoolRole::kRollout ? rollouts : scorers)
        .push_back(absl::StrCat("127.0.0.1:", base + 1 + m.slot));
  }
  groups.push_back({{"targets", rollouts}, {"labels", {{"job", "duet-rollout"}}}});
  groups.push_back({{"targets", scorers}, {"labels", {{"job", "duet-scorer"}}}});
  return WriteFileAtomically(JoinPath(out, "prometheus_targets.json"),
                             groups.dump(2) + "\n");
}

// The command line to continue a stopped run: this one, with --resume instead of
// --overwrite.
std::string ResumeCommand() {
  std::string command;
  for (const std::string& arg : gflags::GetArgvs()) {
    if (absl::StartsWith(arg, "--overwrite") || absl::StartsWith(arg, "--resume"))
      continue;
    absl::StrAppend(&command, command.empty() ? "" : " ", arg);
  }
  return absl::StrCat(command, " --resume");
}

// `*stopped_by`: the signal that stopped the run (0: none).
absl::Status RunLocalImpl(int* stopped_by) {
  if (FLAGS_resume && FLAGS_overwrite) {
    return absl::InvalidArgumentError(
        "--resume continues the run in --out, --overwrite deletes it: give one");
  }
  DUET_ASSIGN_OR_RETURN(Recipe recipe, LoadRecipe(FLAGS_recipe, RecipeSettings()));
  // Flags given on the command line override the recipe (and its --set keys).
  auto given = [](const char* flag) {
    return !gflags::GetCommandLineFlagInfoOrDie(flag).is_default;
  };
  RecipeOverrides overrides;
  if (!FLAGS_out.empty()) overrides.out = FLAGS_out;
  if (given("model")) overrides.model = FLAGS_model;
  if (given("data")) overrides.data = FLAGS_data;
  if (FLAGS_local_steps >= 0) overrides.steps = FLAGS_local_steps;
  if (FLAGS_rl_seed >= 0) overrides.seed = static_cast<uint64_t>(FLAGS_rl_seed);
  if (given("rollout_workers")) overrides.rollout_workers = FLAGS_rollout_workers;
  if (given("scorer_workers")) overrides.scorer_workers = FLAGS_scorer_workers;
  DUET_RETURN_IF_ERROR(ApplyOverrides(overrides, &recipe));
  const std::string out = recipe.out;
  if (recipe.rollout_workers < 1 || recipe.scorer_workers < 1) {
    return absl::InvalidArgumentError(
        "local: need at least one rollout and one scorer worker");
  }
  // Everything the run reads is checked before --out is touched: a typo fails here, with
  // the old run intact.
  DUET_ASSIGN_OR_RETURN(world::ModelBundle base, world::LoadBundle(recipe.model));
  {
    std::vector<std::vector<int64_t>> prompts, images;
    DUET_RETURN_IF_ERROR(LoadRlInputs(base, recipe.data, &prompts, &images));
    DUET_RETURN_IF_ERROR(
        world::ReadPrompts(JoinPath(recipe.data, "eval_gen.jsonl")).status());
    DUET_RETURN_IF_ERROR(
        world::ReadImages(JoinPath(recipe.data, "eval_und.jsonl")).status());
  }
  // The folder is this job's until it ends; only then is what it holds looked at.
  DUET_RETURN_IF_ERROR(MakeDirs(out));
  DUET_ASSIGN_OR_RETURN(RunFolderLock folder_lock, RunFolderLock::Acquire(out));
  if (const std::string found = RunFolderResult(out);
      !found.empty() && !FLAGS_resume && !FLAGS_overwrite) {
    return absl::FailedPreconditionError(absl::StrCat(
        out, " holds a run (", found,
        "): continue it with --resume, or start afresh with --overwrite (deletes it)"));
  }
  DUET_RETURN_IF_ERROR(folder_lock.WritePid());
  if (!FLAGS_resume) {
    // A fresh run: drop what an earlier run left in the folder.
    for (const char* stale :
         {"checkpoints", "metrics.jsonl", "ledger.jsonl", "model", "report"}) {
      std::error_code ec;
      std::filesystem::remove_all(JoinPath(out, stale), ec);
    }
  }
  // Written again when this run ends; the pool controller reads it as "the run is over".
  std::remove(JoinPath(out, "final_state.json").c_str());
  const std::string report = JoinPath(out, "report");
  const std::string logs = JoinPath(out, "logs");
  DUET_RETURN_IF_ERROR(MakeDirs(report));
  DUET_RETURN_IF_ERROR(MakeDirs(logs));
  const std::string recipe_path = JoinPath(out, "recipe.local.yaml");
  DUET_RETURN_IF_ERROR(WriteFileAtomically(recipe_path, RecipeToYaml(recipe)));
  // The desired pools, until `duet pool` changes them.
  const PoolCounts initial{recipe.rollout_workers, recipe.scorer_workers};
  DUET_RETURN_IF_ERROR(WritePoolFile(JoinPath(out, "pool.json"), initial));

  // A fresh shared token for this run, readable by the owner only.
  std::random_device rd;
  const std::string token = absl::StrFormat("%016x%016x", (uint64_t{rd()} << 32) | rd(),
                                            (uint64_t{rd()} << 32) | rd());
  const std::string token_file = JoinPath(out, "auth_token");
  DUET_RETURN_IF_ERROR(WriteFileAtomically(token_file, token + "\n"));
  chmod(token_file.c_str(), 0600);

  EvalOptions eval = EvalOptionsFromFlags(recipe.data);
  eval.report_dir = JoinPath(report, "before");
  DUET_ASSIGN_OR_RETURN(EvalResult before, RunShapesEval(base, eval));
  std::fprintf(stderr, "ShapesEval before RL:\n%s\n", before.table.c_str());

  const std::string port_file = JoinPath(out, "learner.port");
  std::remove(port_file.c_str());
  std::vector<std::string> learner_args = {
      FindBinary(FLAGS_bin_dir, "duet-learner", "learner/service"),
      "--config=" + recipe_path, "--address=127.0.0.1:0", "--port_file=" + port_file,
      "--auth_token_file=" + token_file};
  if (FLAGS_resume) learner_args.push_back("--resume");
  if (FLAGS_metrics_base_port > 0) {
    learner_args.push_back(
        absl::StrCat("--metrics_address=127.0.0.1:", FLAGS_metrics_base_port));
  }
  const auto t0 = std::chrono::steady_clock::now();
  // The learner's output: on the terminal (its progress lines) and in
  // <out>/logs/learner.log.
  DUET_ASSIGN_OR_RETURN(SpawnedTee learner_tee,
                        SpawnTee(learner_args, JoinPath(logs, "learner.log")));
  const pid_t learner = learner_tee.program;
  // However this returns, no learner outlives it (one that never served is killed) and
  // the copier, whose input closes with the learner, is reaped.
  bool learner_reaped = false;
  absl::Cleanup reap = [&learner_tee, &learner_reaped] {
    if (!learner_reaped) {
      kill(learner_tee.program, SIGKILL);
      waitpid(learner_tee.program, nullptr, 0);
    }
    waitpid(learner_tee.copier, nullptr, 0);
  };
  absl::Mutex mu;  // guards `stopping` against the signal thread
  bool stopping = false;
  // Each signal goes on to the learner: the first makes it finish its step and
  // checkpoint, a second aborts it (learner/service/main.cc). The workers leave on its
  // shutdown notice.
  SignalWatcher signals([&](int signo) {
    absl::MutexLock lock(&mu);
    std::fprintf(
        stderr,
        stopping ? "stopping now: the learner aborts without finishing its step\n"
                 : "stopping: the learner checkpoints after its step (again to abort)\n");
    stopping = true;
    if (*stopped_by == 0) *stopped_by = signo;
    kill(learner, SIGTERM);
  });
  // Wait for the learner to serve.
  std::string port;
  for (int i = 0; i < 1200 && port.empty(); ++i) {
    int status = 0;
    if (waitpid(learner, &status, WNOHANG) == learner) {
      learner_reaped = true;
      return absl::InternalError(
          "the learner exited before serving (see its output above)");
    }
    auto p = ReadFileToString(port_file);
    if (p.ok()) port = std::string(absl::StripAsciiWhitespace(*p));
    if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (port.empty())
    return absl::DeadlineExceededError(
        "the learner did not start serving within 2 minutes");
  const std::string target = "127.0.0.1:" + port;
  LocalLauncher launcher(recipe, target, token_file, logs);
  WorkerPool pool(&launcher, RealClock(), [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  });
  // The controller loop: keep the pools at pool.json's counts until the learner ends.
  const std::string pool_path = JoinPath(out, "pool.json");
  const std::string pool_status_path = JoinPath(out, "pool_status.json");
  const std::string final_state = JoinPath(out, "final_state.json");
  PoolCounts desired = initial;
  std::string last_status;
  std::string last_pool_error;
  int status = 0;
  for (;;) {
    const bool learner_ended = waitpid(learner, &status, WNOHANG) == learner;
    learner_reaped = learner_reaped || learner_ended;
    if (absl::StatusOr<PoolCounts> asked = ReadPoolFile(pool_path); asked.ok()) {
      if (*asked != desired) {
        std::fprintf(stderr, "pool: desired rollout %d -> %d, scorer %d -> %d (%s)\n",
                     desired.rollout, asked->rollout, desired.scorer, asked->scorer,
                     pool_path.c_str());
        desired = *asked;
      }
      last_pool_error.clear();
    } else if (std::string e = asked.status().ToString(); e != last_pool_error) {
      std::fprintf(stderr, "pool: keeping rollout %d, scorer %d: %s\n", desired.rollout,
                   desired.scorer, e.c_str());
      last_pool_error = e;
    }
    bool stop_requested = false;
    {
      absl::MutexLock lock(&mu);
      stop_requested = stopping;
    }
    // The run is over once the learner ended, stopping, or wrote its final state (the
    // workers leave on its shutdown notice then: they are not replaced).
    const bool run_over =
        learner_ended || stop_requested || access(final_state.c_str(), F_OK) == 0;
    absl::StatusOr<bool> changed = pool.Reconcile(desired, run_over);
    if (!changed.ok())
      std::fprintf(stderr, "pool: %s\n", changed.status().ToString().c_str());
    if (FLAGS_metrics_base_port > 0 && changed.ok() && *changed) {
      if (absl::Status s = WritePrometheusTargets(out, FLAGS_metrics_base_port, pool);
          !s.ok()) {
        std::fprintf(stderr, "pool: %s\n", s.ToString().c_str());
      }
    }
    const std::string now = PoolStatusJson(getpid(), desired, pool);
    if (now != last_status && !learner_ended) {
      if (absl::Status s = WriteFileAtomically(pool_status_path, now); !s.ok()) {
        std::fprintf(stderr, "pool: %s\n", s.ToString().c_str());
      }
      last_status = now;
    }
    if (learner_ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  std::remove(pool_status_path.c_str());
  const double train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Workers leave on the learner's shutdown notice; give them a moment, then insist.
  const bool learner_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (learner_ok) {
    for (int i = 0; i < 100 && !pool.members().empty(); ++i) {
      (void)pool.Reconcile(desired, /*run_over=*/true);
      if (!pool.members().empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  pool.StopAll(absl::Seconds(10));
  bool stopped = false;
  {
    absl::MutexLock lock(&mu);
    stopped = stopping;
  }
  if (stopped) {
    // A stopped run is not a result: no "after" evaluation of its partial model.
    std::string at = "its last checkpoint";
    if (auto state = ReadFileToString(final_state); state.ok()) {
      const nlohmann::json j = nlohmann::json::parse(*state, nullptr, false);
      if (j.is_object() && j.contains("step")) {
        at = absl::StrCat("step ", j["step"].get<int64_t>(), " of ", recipe.steps);
      }
    }
    std::fprintf(stderr,
                 "duet local: stopped by signal %d at %s; no \"after\" evaluation. "
                 "Continue the run with:\n  %s\n",
                 *stopped_by, at.c_str(), ResumeCommand().c_str());
    return absl::OkStatus();
  }
  if (!learner_ok) {
    return absl::InternalError(absl::StrCat("the learner failed (status ", status,
                                            "); its log and the workers' are in ", logs));
  }

  DUET_ASSIGN_OR_RETURN(world::ModelBundle trained,
                        world::LoadBundle(JoinPath(out, "model")));
  eval.report_dir = JoinPath(report, "after");
  DUET_ASSIGN_OR_RETURN(EvalResult after, RunShapesEval(trained, eval));
  std::fprintf(stderr, "ShapesEval after RL:\n%s\n", after.table.c_str());

  // Reward curves from the learner's metrics: one plot per trained direction, each on its
  // own scale (an image's reward and a caption's differ several-fold), the steps with
  // their 10-step running mean. A direction the recipe does not train reports 0 every
  // step: it gets no plot.
  std::vector<double> gen, und;
  DUET_ASSIGN_OR_RETURN(std::vector<StepRecord> records,
                        ReadStepRecords(JoinPath(out, "metrics.jsonl")));
  for (const StepRecord& r : records) {
    gen.push_back(r.generation_reward);
    und.push_back(r.understanding_reward);
  }
  std::string reward_lines, plots;
  for (const Series& s : {Series{"generation", {230, 150, 40}, gen},
                          Series{"understanding", {80, 160, 240}, und}}) {
    if (std::none_of(s.values.begin(), s.values.end(), [](double v) { return v != 0; }))
      continue;
    constexpr size_t kWindow = 10;
    const std::vector<double> running = RunningMean(s.values, kWindow);
    const world::Rgb dim{static_cast<uint8_t>(s.color.r / 2),
                         static_cast<uint8_t>(s.color.g / 2),
                         static_cast<uint8_t>(s.color.b / 2)};
    const std::string file = absl::StrCat("rewards_", s.name, ".png");
    DUET_RETURN_IF_ERROR(WriteLinePlot(
        JoinPath(report, file), absl::StrCat(s.name, " self-reward per step"),
        {Series{"per step", dim, s.values}, Series{"10-step mean", s.color, running}}));
    absl::StrAppend(&reward_lines, RewardTrendLine(s.name, s.values, kWindow));
    absl::StrAppend(&plots, plots.empty() ? "" : ", ", file);
  }
  std::string hard;
  if (before.has_hard_split && after.has_hard_split) {
    hard = absl::StrFormat(", hard split %.1f%% -> %.1f%%",
                           100 * before.hard_understanding_accuracy,
                           100 * after.hard_understanding_accuracy);
  }
  std::string md = absl::StrFormat(
      "# duet local\n\nrecipe: `%s` (%d steps, directions %s, %d rollout + %d scorer "
      "workers)\n\n"
      "training wall time: %.0f s\n\n## ShapesEval before RL\n```\n%s```\n\n## "
      "ShapesEval after RL\n```\n%s```\n\n"
      "generation %.1f%% -> %.1f%%, understanding %.1f%% -> %.1f%%%s\n\n%s\n"
      "galleries: before/gallery.png, after/gallery.png; reward curves: %s\n",
      recipe_path, static_cast<int>(recipe.steps), recipe.directions,
      recipe.rollout_workers, recipe.scorer_workers, train_seconds, before.table.c_str(),
      after.table.c_str(), 100 * before.generation_accuracy,
      100 * after.generation_accuracy, 100 * before.understanding_accuracy,
      100 * after.understanding_accuracy, hard, reward_lines,
      plots.empty() ? "none (no reward recorded)" : plots);
  DUET_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(report, "summary.md"), md));
  std::printf(
      "generation %.1f%% -> %.1f%%, understanding %.1f%% -> %.1f%%%s\n%sreport: "
      "%s/summary.md\n",
      100 * before.generation_accuracy, 100 * after.generation_accuracy,
      100 * before.understanding_accuracy, 100 * after.understanding_accuracy,
      hard.c_str(), reward_lines.c_str(), report.c_str());
  return absl::OkStatus();
}

}  // namespace

int RunLocal() {
  int stopped_by = 0;
  const int rc = RunCommand("local", [&stopped_by] { return RunLocalImpl(&stopped_by); });
  // Stopped by a signal: exit as the shell reports a process killed by it (130 for
  // Ctrl-C), so that scripts do not take the partial run for a finished one.
  return stopped_by > 0 ? 128 + stopped_by : rc;
}

}  // namespace duet
