// `duet reward-server`: the Shapes oracle served as a duet.v1.Reward service
// (tools/oracle_reward.h), for recipes whose `reward` names an external judge.
//
//   duet reward-server --model=out/base/model --port=7000 --auth_token_file=judge_token
//
// Runs until SIGTERM/SIGINT. Refuses to start without a token unless
// --allow_insecure_no_auth.

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/file_util.h"
#include "common/base/signals.h"
#include "common/base/status_macros.h"
#include "common/rpc/reward_service.h"
#include "common/rpc/rpc_util.h"
#include "common/world/bundle.h"
#include "tools/commands.h"
#include "tools/oracle_reward.h"

DECLARE_string(model);
DEFINE_string(host, "127.0.0.1", "reward-server: address to listen on");
DEFINE_int32(port, 0,
             "reward-server: port to listen on (0: a free one, printed and written to "
             "--port_file)");
DEFINE_string(port_file, "", "reward-server: write the bound port here once serving");
DEFINE_string(auth_token_file, "",
              "reward-server: file holding the shared token every call must carry");
DEFINE_bool(
    allow_insecure_no_auth, false,
    "reward-server: serve without a token (anyone who reaches the port may call)");
DEFINE_string(tls_cert, "", "reward-server: PEM certificate (enables TLS)");
DEFINE_string(tls_key, "", "reward-server: PEM private key");
DEFINE_string(tls_client_ca, "",
              "reward-server: PEM CA of client certificates (enables mutual TLS)");
DEFINE_int32(max_concurrent_calls, 4,
             "reward-server: calls scored at once; more are RESOURCE_EXHAUSTED");

namespace duet {

int RunRewardServer() {
  // First: later threads (gRPC's) inherit the blocked mask.
  absl::Notification stop;
  SignalWatcher signals([&stop](int) {
    if (!stop.HasBeenNotified()) stop.Notify();
  });
  return RunCommand("reward-server", [&]() -> absl::Status {
    DUET_ASSIGN_OR_RETURN(std::string token,
                          ResolveAuthToken(/*token_flag=*/"", FLAGS_auth_token_file));
    if (token.empty() && !FLAGS_allow_insecure_no_auth) {
      return absl::InvalidArgumentError(
          "--auth_token_file is required (or --allow_insecure_no_auth)");
    }
    if (FLAGS_port < 0 || FLAGS_port > 65535)
      return absl::InvalidArgumentError("--port: must be in [0, 65535]");
    DUET_ASSIGN_OR_RETURN(world::ModelBundle bundle, world::LoadBundle(FLAGS_model));
    const world::ModelBundle* b = &bundle;
    RewardService service(
        bundle.layout, token,
        [b](const std::vector<RewardQuery>& queries) {
          return OracleRewards(*b, queries);
        },
        FLAGS_max_concurrent_calls);
    TransportSecurity security;
    security.cert_file = FLAGS_tls_cert;
    security.key_file = FLAGS_tls_key;
    security.ca_file = FLAGS_tls_client_ca;
    DUET_ASSIGN_OR_RETURN(auto creds, MakeServerCredentials(security));
    int port = 0;
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<grpc::Server> server,
                          StartRewardServer(absl::StrCat(FLAGS_host, ":", FLAGS_port),
                                            creds, &service, &port));
    if (!FLAGS_port_file.empty()) {
      DUET_RETURN_IF_ERROR(
          WriteFileAtomically(FLAGS_port_file, absl::StrCat(port, "\n")));
    }
    std::printf("reward-server: the Shapes oracle on %s:%d (model %s)\n",
                FLAGS_host.c_str(), port, FLAGS_model.c_str());
    std::fflush(stdout);
    stop.WaitForNotification();
    LOG(INFO) << "reward-server: stopping";
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return absl::OkStatus();
  });
}

}  // namespace duet
