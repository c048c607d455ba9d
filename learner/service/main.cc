// duet-learner: hands out rollout and scoring work, turns self-rewards into advantages
// (GRPO) or preference pairs (SimPO), updates the policy, checkpoints, and broadcasts new
// weights to every worker. Thin: flags and recipe, then LearnerServer.

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/base/clock.h"
#include "common/base/file_util.h"
#include "common/base/flag_help.h"
#include "common/base/signals.h"
#include "common/metrics/catalogue.h"
#include "common/metrics/metrics_server.h"
#include "common/rpc/rpc_util.h"
#include "learner/recipe.h"
#include "learner/service/learner_server.h"

// Recipe keys: each flag, when given, overrides the recipe's value (defaults shown are
// the built-in recipe's, learner/recipe.h).
DEFINE_string(
    config, "",
    "YAML recipe (configs/recipes/*.yaml); --set and the flags below override its keys");
// Shown by --help; the values are taken out of argv before gflags parses (a gflag keeps
// only the last of a repeated flag).
DEFINE_string(set, "",
              "KEY=VALUE: set a recipe key (repeatable; keys and defaults below)");
DEFINE_string(model, duet::Recipe().model,
              "recipe.model: base model folder (also the frozen reference)");
DEFINE_string(data, duet::Recipe().data,
              "recipe.data: folder with rl_gen_prompts.jsonl and rl_und_images.jsonl");
DEFINE_string(out, duet::Recipe().out,
              "recipe.out: run folder (checkpoints/, model/, metrics.jsonl)");
DEFINE_int64(steps, duet::Recipe().steps, "recipe.steps");
DEFINE_string(algorithm, "grpo", "recipe.algorithm: grpo or simpo");
DEFINE_string(directions, duet::Recipe().directions,
              "recipe.directions: joint, generation or understanding");
DEFINE_int64(k, duet::Recipe().rl.k, "recipe.k: samples per input");
DEFINE_double(lr, duet::Recipe().optimizer.lr, "recipe.lr");
DEFINE_double(kl_coef, duet::Recipe().optimizer.grpo.kl_coef, "recipe.grpo.kl_coef");
DEFINE_bool(frozen_scorer, duet::Recipe().frozen_scorer,
            "recipe.frozen_scorer: score with the base weights (ablation)");
DEFINE_uint64(seed, duet::Recipe().rl.seed, "recipe.seed");
DEFINE_int64(sync_every, duet::Recipe().sync_every,
             "recipe.sync_every: broadcast weights every N updates");
DEFINE_int64(max_lag, duet::Recipe().max_lag,
             "recipe.max_lag: 0 synchronous; N > 0 asynchronous (the next N steps "
             "collected while one trains)");
DEFINE_int32(rollout_workers, duet::Recipe().rollout_workers,
             "recipe.workers.rollout: rollout workers to wait for");
DEFINE_int32(scorer_workers, duet::Recipe().scorer_workers,
             "recipe.workers.scorer: scorer workers to wait for");
DEFINE_string(collective, duet::Recipe().collective,
              "recipe.collective: gloo, nccl or none (gRPC weight stream only)");
// The process.
DEFINE_string(address, "127.0.0.1:50051",
              "gRPC listen address (port 0: any free port, see --port_file)");
DEFINE_string(port_file, "", "write the bound gRPC port to this file once serving");
DEFINE_string(store_host, "127.0.0.1",
              "data-plane address: workers reach the learner's Gloo transport here, and "
              "Gloo listens only "
              "on it (the ranks meet over the gRPC channel: no store port of its own)");
DEFINE_int32(collective_timeout_s, 60,
             "bound on one c10d rendezvous or broadcast; past it the sync falls back to "
             "the gRPC stream");
DEFINE_double(
    reform_window_s, 5.0,
    "after a failed broadcast epoch, how long to wait for the members' answers "
    "before re-forming the group with those that answered, within the same sync; "
    "0: no re-form (they all fetch over the gRPC stream)");
DEFINE_string(
    auth_token, "",
    "shared token every RPC must carry (or --auth_token_file / $DUET_AUTH_TOKEN)");
DEFINE_string(auth_token_file, "", "file holding the shared token");
DEFINE_bool(allow_insecure_no_auth, false,
            "run without a token (only on a trusted network)");
DEFINE_string(tls_cert, "", "PEM server certificate (enables TLS)");
DEFINE_string(tls_key, "", "PEM server key");
DEFINE_string(tls_client_ca, "", "PEM CA for client certificates (enables mutual TLS)");
DEFINE_bool(resume, false, "continue from the run folder's latest checkpoint");
DEFINE_int32(threads, 1, "intra-op threads for LibTorch");
DEFINE_string(metrics_address, "",
              "HOST:PORT to serve Prometheus /metrics on (docs/metrics.md; empty: off)");
DEFINE_string(metrics_port_file, "",
              "write the bound /metrics port to this file once serving (with "
              "--metrics_address=HOST:0)");
DEFINE_string(health_address, "",
              "HOST:PORT of a plaintext grpc.health.v1 server for probes (empty: off)");
DEFINE_int32(stall_timeout_s, 1800,
             "liveness (grpc.health.v1 service \"\") turns NOT_SERVING when the training "
             "loop has made no "
             "progress for this long (one step longer than this looks hung); 0: never");
DEFINE_int32(
    max_rpc_threads, duet::LearnerOptions().max_rpc_threads,
    "at most this many gRPC handler threads for the control calls (a waiting "
    "PullWork holds none); calls past it get RESOURCE_EXHAUSTED and workers back "
    "off (0: unbounded)");
DEFINE_int32(max_workers, duet::LearnerOptions().max_workers,
             "at most this many registered workers; Register past it gets "
             "RESOURCE_EXHAUSTED");

namespace {

constexpr char kUsage[] = "duet-learner --config=RECIPE.yaml [--flag=value ...]";

bool Set(const char* flag) {
  return !gflags::GetCommandLineFlagInfoOrDie(flag).is_default;
}

}  // namespace

int main(int argc, char** argv) {
  if (duet::PrintHelpIfAsked(
          argc, argv, kUsage,
          {{"recipe",
            {"config", "model", "data", "out", "steps", "algorithm", "directions", "k",
             "lr", "kl_coef", "frozen_scorer", "seed", "sync_every", "max_lag",
             "collective"}},
           {"recipe keys (--set KEY=VALUE, repeatable, after --config; defaults shown)",
            {"set"},
            duet::RecipeKeyDefaults()},
           {"worker pools", {"rollout_workers", "scorer_workers"}},
           {"serving",
            {"address", "port_file", "store_host", "collective_timeout_s",
             "reform_window_s", "threads", "max_rpc_threads", "max_workers", "resume",
             "metrics_address", "metrics_port_file", "health_address",
             "stall_timeout_s"}},
           {"security",
            {"auth_token_file", "auth_token", "allow_insecure_no_auth", "tls_cert",
             "tls_key", "tls_client_ca"}}})) {
    return 0;
  }
  const std::vector<std::string> settings = duet::TakeRepeatedFlag("set", &argc, argv);
  gflags::SetUsageMessage(kUsage);
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc > 1) {  // a stray word ("lr=1e-3") would otherwise be ignored
    std::fprintf(stderr,
                 "duet-learner: unexpected argument '%s' (flags are --name=value; recipe "
                 "keys --set "
                 "KEY=VALUE; --help lists them)\n",
                 argv[1]);
    return 2;
  }
  google::InitGoogleLogging(argv[0]);
  std::unique_ptr<duet::LearnerServer> server;
  absl::Mutex mu;  // guards `server` and `signals_seen` against the signal thread
  int signals_seen = 0;
  // The first SIGTERM/SIGINT finishes the step and checkpoints; a second one, while the
  // learner is still at it (stuck waiting for workers that never come, say), aborts now.
  duet::SignalWatcher signals([&](int signo) {
    absl::MutexLock lock(&mu);
    if (++signals_seen > 1) {
      std::fprintf(stderr,
                   "duet-learner: second signal %d while stopping: aborting now, without "
                   "finishing the step "
                   "or checkpointing (the last checkpoint stands)\n",
                   signo);
      std::_Exit(128 + signo);
    }
    LOG(INFO) << "signal " << signo
              << ": finishing the step, writing a checkpoint (a second signal aborts)";
    if (server) server->Stop();
  });
  at::set_num_threads(std::max(1, FLAGS_threads));

  duet::Recipe recipe;
  if (!FLAGS_config.empty() || !settings.empty()) {
    auto r = FLAGS_config.empty() ? duet::ParseRecipe("", settings)
                                  : duet::LoadRecipe(FLAGS_config, settings);
    if (!r.ok()) {
      std::fprintf(stderr, "duet-learner: %s\n", r.status().ToString().c_str());
      return 2;
    }
    recipe = *r;
  }
  duet::RecipeOverrides o;
  if (Set("model")) o.model = FLAGS_model;
  if (Set("data")) o.data = FLAGS_data;
  if (Set("out")) o.out = FLAGS_out;
  if (Set("steps")) o.steps = FLAGS_steps;
  if (Set("algorithm")) o.algorithm = FLAGS_algorithm;
  if (Set("directions")) o.directions = FLAGS_directions;
  if (Set("k")) o.k = FLAGS_k;
  if (Set("lr")) o.lr = FLAGS_lr;
  if (Set("kl_coef")) o.kl_coef = FLAGS_kl_coef;
  if (Set("frozen_scorer")) o.frozen_scorer = FLAGS_frozen_scorer;
  if (Set("seed")) o.seed = FLAGS_seed;
  if (Set("sync_every")) o.sync_every = FLAGS_sync_every;
  if (Set("max_lag")) o.max_lag = FLAGS_max_lag;
  if (Set("rollout_workers")) o.rollout_workers = FLAGS_rollout_workers;
  if (Set("scorer_workers")) o.scorer_workers = FLAGS_scorer_workers;
  if (Set("collective")) o.collective = FLAGS_collective;
  if (auto s = duet::ApplyOverrides(o, &recipe); !s.ok()) {
    std::fprintf(stderr, "duet-learner: %s\n", s.ToString().c_str());
    return 2;
  }

  duet::LearnerOptions options;
  options.recipe = recipe;
  options.address = FLAGS_address;
  options.store_host = FLAGS_store_host;
  options.resume = FLAGS_resume;
  options.collective_timeout = absl::Seconds(std::max(1, FLAGS_collective_timeout_s));
  if (!(FLAGS_reform_window_s >= 0 && FLAGS_reform_window_s <= 3600)) {
    std::fprintf(stderr, "duet-learner: --reform_window_s must be in [0, 3600]\n");
    return 2;
  }
  options.reform_window = absl::Seconds(FLAGS_reform_window_s);
  options.max_rpc_threads = FLAGS_max_rpc_threads;
  if (FLAGS_max_workers < 1) {
    std::fprintf(stderr, "duet-learner: --max_workers must be >= 1\n");
    return 2;
  }
  options.max_workers = FLAGS_max_workers;
  options.tls = {FLAGS_tls_cert, FLAGS_tls_key, FLAGS_tls_client_ca, ""};
  auto resolved = duet::ResolveAuthToken(FLAGS_auth_token, FLAGS_auth_token_file);
  if (!resolved.ok()) {
    std::fprintf(stderr, "duet-learner: %s\n", resolved.status().ToString().c_str());
    return 2;
  }
  const std::string token = *resolved;
  if (token.empty() && !FLAGS_allow_insecure_no_auth) {
    std::fprintf(
        stderr,
        "duet-learner: give --auth_token_file (or --auth_token, $DUET_AUTH_TOKEN), "
        "or --allow_insecure_no_auth on a trusted network\n");
    return 2;
  }
  options.auth_token = token;
  options.metrics_registry = std::make_shared<prometheus::Registry>();
  duet::metrics::RegisterProcessMetrics(*options.metrics_registry, "learner");
  options.health_address = FLAGS_health_address;
  options.stall_timeout = absl::Seconds(FLAGS_stall_timeout_s);
  options.on_step = [&recipe](const duet::StepReport& r) {
    // Samples per second of the step's own phases; in asynchronous mode the collection
    // overlapped earlier steps, so only the wait for it counts.
    const double busy = (recipe.max_lag > 0 ? r.collect_wait_seconds
                                            : r.rollout_seconds + r.score_seconds) +
                        r.update_seconds;
    std::fprintf(
        stderr,
        "step %ld/%ld  r_gen %.3f  r_und %.3f  kl %.4f  loss %.4f  %.1f samples/s  v%ld  "
        "dlogp %s%s\n",
        static_cast<long>(r.step + 1), static_cast<long>(recipe.steps),
        r.generation_reward, r.understanding_reward, r.update.loss.kl, r.update.loss.loss,
        r.samples / std::max(1e-9, busy), static_cast<long>(r.policy_version),
        // No sample of the current version (asynchronous mode): nothing to compare.
        r.logprob_samples_checked > 0
            ? absl::StrFormat("%.1e", r.logprob_max_diff).c_str()
            : "n/a",
        r.samples_dropped_stale > 0 || r.max_sample_lag > 0
            ? absl::StrFormat("  lag %d  stale %d", r.max_sample_lag,
                              r.samples_dropped_stale)
                  .c_str()
            : "");
  };
  // Declared after `server`: stops serving (and running the hook) before it goes away.
  std::unique_ptr<duet::metrics::MetricsServer> metrics_server;
  if (!FLAGS_metrics_address.empty()) {
    auto m = duet::metrics::MetricsServer::Start(FLAGS_metrics_address,
                                                 options.metrics_registry);
    if (!m.ok()) {
      std::fprintf(stderr, "duet-learner: %s\n", m.status().ToString().c_str());
      return 1;
    }
    metrics_server = std::move(*m);
    LOG(INFO) << "metrics on port " << metrics_server->port();
    if (!FLAGS_metrics_port_file.empty()) {
      if (absl::Status s = metrics_server->WritePortFile(FLAGS_metrics_port_file);
          !s.ok()) {
        std::fprintf(stderr, "duet-learner: %s\n", s.ToString().c_str());
        return 1;
      }
    }
  } else if (!FLAGS_metrics_port_file.empty()) {
    std::fprintf(stderr, "duet-learner: --metrics_port_file needs --metrics_address\n");
    return 2;
  }
  {
    absl::MutexLock lock(&mu);
    server = std::make_unique<duet::LearnerServer>(options, duet::RealClock());
    if (signals_seen > 0) server->Stop();  // a signal came while starting up
  }
  if (metrics_server) {
    duet::LearnerServer* s = server.get();
    metrics_server->AddRefreshHook([s] { s->RefreshMetrics(); });
  }
  auto port = server->Start();
  if (!port.ok()) {
    std::fprintf(stderr, "duet-learner: %s\n", port.status().ToString().c_str());
    return 1;
  }
  if (!FLAGS_port_file.empty()) {
    auto s = duet::WriteFileAtomically(FLAGS_port_file, absl::StrFormat("%d\n", *port));
    if (!s.ok()) {
      std::fprintf(stderr, "duet-learner: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  absl::Status s = server->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "duet-learner: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
