#ifndef DUET_COMMON_WORKER_WORKER_MAIN_H_
#define DUET_COMMON_WORKER_WORKER_MAIN_H_

// The shared main() of duet-rollout and duet-scorer: the model folder, the channel to the
// learner (token, TLS), the health server, SIGTERM handling, then WorkerRuntime::Run.
// Each binary's main.cc is one call to WorkerBinaryMain (worker_flags.cc, compiled into
// the binary: it defines the flags and fills WorkerMainOptions).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/base/flag_help.h"
#include "common/model/token_layout.h"
#include "common/worker/worker_runtime.h"

namespace duet {

// What a role plugs into the runtime: its item handler, and optionally what it does with
// each registration's run settings (WorkerOptions::on_register; the scorer takes its
// rewards from there).
struct RoleHandlers {
  RoleHandlers(WorkHandler h) : handler(std::move(h)) {}  // NOLINT: a handler alone
  RoleHandlers(WorkHandler h, std::function<absl::Status(const v1::RegisterResponse&)> r)
      : handler(std::move(h)), on_register(std::move(r)) {}
  WorkHandler handler;
  std::function<absl::Status(const v1::RegisterResponse&)> on_register;
};

// Builds the role's handlers once the model folder's layout is known; `max_batch` is the
// --capacity flag.
using HandlerFactory =
    std::function<RoleHandlers(const TokenLayout& layout, int64_t max_batch)>;

// What a worker process is told on its command line (duet-rollout --help).
struct WorkerMainOptions {
  std::string learner = "127.0.0.1:50051";  // the learner's gRPC address
  std::string model = "out/base/model";     // base weights and duet.json
  std::string auth_token;                   // resolved with auth_token_file
  std::string auth_token_file;
  std::string tls_ca;    // enables TLS
  std::string tls_cert;  // client certificate (mutual TLS)
  std::string tls_key;
  std::string tls_server_name;                 // default: the host of `learner`
  int32_t capacity = 256;                      // rows decoded or scored per batch
  int32_t threads = 1;                         // LibTorch intra-op threads
  std::string health_address = "127.0.0.1:0";  // empty: no health server
  // Liveness fails after this long without progress of the pull loop (0: never);
  // readiness is "registered with the learner" (common/rpc/health_server.h
  // HealthReporter).
  int32_t stall_timeout_s = 1800;
  std::string name;                // default host:pid
  std::string metrics_address;     // HOST:PORT of /metrics (docs/metrics.md); empty: off
  std::string metrics_port_file;   // the bound /metrics port goes here once serving;
                                   // REQUIRES metrics_address when set
  std::string collective_address;  // Gloo listen address; empty: see WorkerOptions
  int32_t collective_timeout_s = 60;
};

// Runs the worker until it is stopped (SIGTERM/SIGINT) or fails. REQUIRES: logging and
// flags are initialised. Returns the process exit code (0 clean, 1 failure).
int WorkerMain(v1::Role role, const WorkerMainOptions& options,
               HandlerFactory make_handler);

// main() of a role binary: parses the flags (defined in worker_flags.cc, which each role
// binary compiles in), initialises logging, then WorkerMain. --help lists the shared
// flags, then `role_flags` (the flags the role's main.cc defines).
int WorkerBinaryMain(int argc, char** argv, v1::Role role, const char* usage,
                     HandlerFactory make_handler,
                     const std::vector<FlagGroup>& role_flags = {});

}  // namespace duet

#endif  // DUET_COMMON_WORKER_WORKER_MAIN_H_
