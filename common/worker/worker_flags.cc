// The command-line flags of duet-rollout and duet-scorer, and their main(). Compiled into
// each role binary, not into duet::worker: gflags are defined only in binaries.

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>

#include "common/base/flag_help.h"
#include "common/worker/worker_main.h"

DEFINE_string(learner, "127.0.0.1:50051",
              "address of the learner (the only address a worker needs)");
DEFINE_string(model, "out/base/model",
              "model folder with the base weights and duet.json");
DEFINE_string(
    auth_token, "",
    "shared token sent with every RPC (or use --auth_token_file / $DUET_AUTH_TOKEN)");
DEFINE_string(auth_token_file, "", "file holding the shared token");
DEFINE_string(tls_ca, "", "PEM CA to verify the learner's certificate (enables TLS)");
DEFINE_string(tls_cert, "", "PEM client certificate for mutual TLS");
DEFINE_string(tls_key, "", "PEM client key for mutual TLS");
DEFINE_string(tls_server_name, "",
              "name to verify in the learner's certificate (default: host of --learner)");
DEFINE_int32(capacity, 256, "rows decoded or scored per batch");
DEFINE_int32(threads, 1, "intra-op threads for LibTorch");
DEFINE_string(health_address, "127.0.0.1:0",
              "where to serve grpc.health.v1 (empty: off)");
DEFINE_int32(stall_timeout_s, 1800,
             "liveness (grpc.health.v1 service \"\") turns NOT_SERVING when the pull "
             "loop has made no "
             "progress for this long (one item longer than this looks hung); 0: never");
DEFINE_string(name, "", "worker name in logs and status (default host:pid)");
DEFINE_string(metrics_address, "",
              "HOST:PORT to serve Prometheus /metrics on (docs/metrics.md; empty: off)");
DEFINE_string(metrics_port_file, "",
              "write the bound /metrics port to this file once serving (with "
              "--metrics_address=HOST:0)");
DEFINE_int32(collective_timeout_s, 60, "bound on one c10d rendezvous or weight receive");
DEFINE_string(collective_address, "",
              "address this worker's Gloo transport listens on (default: 127.0.0.1 when "
              "the learner's "
              "store is on loopback, else the address of this host's name)");

namespace duet {

int WorkerBinaryMain(int argc, char** argv, v1::Role role, const char* usage,
                     HandlerFactory make_handler,
                     const std::vector<FlagGroup>& role_flags) {
  std::vector<FlagGroup> groups = {
      {"learner", {"learner", "name"}},
      {"security",
       {"auth_token_file", "auth_token", "tls_ca", "tls_cert", "tls_key",
        "tls_server_name"}},
      {"model and compute",
       {"model", "capacity", "threads", "collective_address", "collective_timeout_s"}},
      {"operations",
       {"health_address", "stall_timeout_s", "metrics_address", "metrics_port_file"}}};
  groups.insert(groups.end(), role_flags.begin(), role_flags.end());
  if (PrintHelpIfAsked(argc, argv, usage, groups)) return 0;
  gflags::SetUsageMessage(usage);
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&argc, &argv, /*remove_flags=*/true);
  if (argc > 1) {  // a stray word would otherwise be ignored
    std::fprintf(
        stderr,
        "%s: unexpected argument '%s' (flags are --name=value; --help lists them)\n",
        argv[0], argv[1]);
    return 2;
  }
  google::InitGoogleLogging(argv[0]);
  WorkerMainOptions options;
  options.learner = FLAGS_learner;
  options.model = FLAGS_model;
  options.auth_token = FLAGS_auth_token;
  options.auth_token_file = FLAGS_auth_token_file;
  options.tls_ca = FLAGS_tls_ca;
  options.tls_cert = FLAGS_tls_cert;
  options.tls_key = FLAGS_tls_key;
  options.tls_server_name = FLAGS_tls_server_name;
  options.capacity = FLAGS_capacity;
  options.threads = FLAGS_threads;
  options.health_address = FLAGS_health_address;
  options.stall_timeout_s = FLAGS_stall_timeout_s;
  options.name = FLAGS_name;
  options.metrics_address = FLAGS_metrics_address;
  options.metrics_port_file = FLAGS_metrics_port_file;
  options.collective_address = FLAGS_collective_address;
  options.collective_timeout_s = FLAGS_collective_timeout_s;
  return WorkerMain(role, options, std::move(make_handler));
}

}  // namespace duet
