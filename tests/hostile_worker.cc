// A broken or hostile worker for tests/hostile_worker_test.sh: it holds the run's token,
// speaks the real protocol to a real duet-learner, and misbehaves in one way (--mode):
//   bad-version   answers every rollout item with a well-formed result whose
//                 policy_version the item cannot have (the item's + 1, 2^62, -1 in turn)
//   error         answers every item with WorkError --code (14 UNAVAILABLE, 13 INTERNAL,
//                 or a number that is no status code)
//   hold          takes one item and never answers it, heartbeating all along
//   ghost         answers work with UNAVAILABLE and confirms every weight sync it is
//                 sent without ever joining the broadcast (a member that never joins)
//   thief         registers, then heartbeats, pulls and deregisters in the names of the
//                 run's other workers (from GetRunStatus) with its own session
//   squat         registers and heartbeats, but never pulls (a seat that does no work)
// It re-registers whenever the learner drops it (a quarantined name is refused for the
// cool-down; it waits and tries again), and exits 0 when the learner is gone or says the
// run is over. Every answer it gets is logged, one line each, for the test to read.
#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/model/token_layout.h"
#include "common/rpc/rpc_util.h"
#include "duet/v1/coordinator.grpc.pb.h"

DEFINE_string(learner, "127.0.0.1:50051", "the learner's gRPC address");
DEFINE_string(auth_token_file, "", "file holding the run's token");
DEFINE_string(model, "",
              "model folder (duet.json: the token layout of well-formed results)");
DEFINE_string(role, "rollout", "rollout or scorer");
DEFINE_string(mode, "error", "bad-version, error, hold, ghost, thief or squat");
DEFINE_int32(code, 14, "error: the WorkError code");
DEFINE_string(name, "hostile", "the name it registers under");

namespace duet {
namespace {

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

class Hostile {
 public:
  Hostile(std::string token, TokenLayout layout)
      : token_(std::move(token)),
        layout_(layout),
        stub_(v1::Coordinator::NewStub(
            grpc::CreateChannel(FLAGS_learner, grpc::InsecureChannelCredentials()))) {}

  int Run() {
    for (;;) {
      const grpc::Status reg = Register();
      // Before its first registration the learner may still be starting.
      if (reg.error_code() == grpc::StatusCode::UNAVAILABLE &&
          (registered_ || ++startup_tries_ > 600)) {
        return Gone();
      }
      if (!reg.ok()) {  // starting, quarantined or full: wait and try again
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      if (FLAGS_mode == "thief") return Thief();
      if (FLAGS_mode == "squat") {
        Hold();  // heartbeats until the learner drops it or is gone
        continue;
      }
      for (;;) {
        v1::PullWorkRequest pull;
        pull.set_worker_id(id_);
        pull.set_session(session_);
        pull.set_wait_ms(1000);
        v1::PullWorkResponse resp;
        const grpc::Status s =
            Call([&](grpc::ClientContext* c) { return stub_->PullWork(c, pull, &resp); });
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE) return Gone();
        if (s.error_code() == grpc::StatusCode::NOT_FOUND)
          break;  // dropped: register again
        if (!s.ok()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        if (resp.shutdown()) return Gone();
        if (!resp.has_item()) continue;
        if (FLAGS_mode == "hold" && !resp.item().has_sync()) {
          Say("holding " + resp.item().item_id());
          Hold();
          break;
        }
        Answer(resp.item());
      }
    }
  }

 private:
  template <typename F>
  grpc::Status Call(F f, bool wait_for_ready = false) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(
        wait_for_ready);  // a learner still starting: wait, do not fail fast
    ctx.AddMetadata(kAuthMetadataKey, "Bearer " + token_);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return f(&ctx);
  }

  grpc::Status Register() {
    if (registered_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    v1::RegisterRequest req;
    req.set_role(FLAGS_role == "scorer" ? v1::ROLE_SCORER : v1::ROLE_ROLLOUT);
    req.set_name(FLAGS_name);
    req.set_capacity(64);
    req.set_pid(getpid());
    v1::RegisterResponse resp;
    const grpc::Status s =
        Call([&](grpc::ClientContext* c) { return stub_->Register(c, req, &resp); },
             /*wait_for_ready=*/!registered_);
    Say(absl::StrCat("register: ", s.error_code(), " ", s.error_message()));
    id_ = resp.worker_id();
    session_ = resp.session();
    registered_ = registered_ || s.ok();
    return s;
  }

  int Gone() {
    Say("the learner is gone or the run is over");
    return 0;
  }

  void Answer(const v1::WorkItem& item) {
    v1::CompleteWorkRequest r;
    r.set_worker_id(id_);
    r.set_session(session_);
    r.set_item_id(item.item_id());
    r.set_policy_version(item.policy_version());
    if (item.has_sync()) {
      // A ghost (and every mode) confirms what it was told without receiving anything.
      r.mutable_sync()->set_version(item.sync().version());
      r.mutable_sync()->set_checksum(item.sync().checksum());
    } else if (FLAGS_mode == "bad-version" && item.has_rollout()) {
      for (int g = 0; g < item.rollout().inputs_size(); ++g) {
        auto* group = r.mutable_rollout()->add_groups();
        for (int k = 0; k < item.rollout().k(); ++k) {
          auto* sample = group->add_samples();
          const bool image = item.rollout().task() == v1::TASK_GENERATION;
          const int n = image ? static_cast<int>(layout_.image_tokens) : 2;
          for (int t = 0; t < n; ++t) {
            sample->mutable_output()->add_ids(
                image ? layout_.image_begin
                      : (t == 0 ? layout_.text_begin : layout_.eos));
            sample->add_policy_logprobs(-1.0f);
          }
        }
      }
      const int64_t versions[] = {item.policy_version() + 1, int64_t{1} << 62, -1};
      r.set_policy_version(versions[answered_++ % 3]);
    } else {
      r.mutable_error()->set_code(FLAGS_mode == "error" ? FLAGS_code : 14);
      r.mutable_error()->set_message("hostile worker");
    }
    v1::CompleteWorkResponse ack;
    const grpc::Status s =
        Call([&](grpc::ClientContext* c) { return stub_->CompleteWork(c, r, &ack); });
    Say(absl::StrCat("complete ", item.item_id(), item.has_sync() ? " (sync)" : "", ": ",
                     s.error_code(), " accepted=", ack.accepted(), " ",
                     s.error_message()));
  }

  void Hold() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      v1::HeartbeatRequest beat;
      beat.set_worker_id(id_);
      beat.set_session(session_);
      v1::HeartbeatResponse resp;
      const grpc::Status s =
          Call([&](grpc::ClientContext* c) { return stub_->Heartbeat(c, beat, &resp); });
      if (!s.ok()) {
        Say(absl::StrCat("heartbeat: ", s.error_code(), " ", s.error_message()));
        return;
      }
    }
  }

  int Thief() {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      v1::RunStatus status;
      const grpc::Status st = Call([&](grpc::ClientContext* c) {
        return stub_->GetRunStatus(c, v1::GetRunStatusRequest(), &status);
      });
      if (!st.ok() || status.done()) return Gone();
      for (const v1::WorkerStatus& w : status.workers()) {
        if (w.worker_id() == id_) continue;
        v1::HeartbeatRequest beat;
        beat.set_worker_id(w.worker_id());
        beat.set_session(session_);
        v1::HeartbeatResponse beat_resp;
        const grpc::Status b = Call([&](grpc::ClientContext* c) {
          return stub_->Heartbeat(c, beat, &beat_resp);
        });
        v1::DeregisterRequest leave;
        leave.set_worker_id(w.worker_id());
        leave.set_session(session_);
        v1::DeregisterResponse left;
        const grpc::Status d = Call(
            [&](grpc::ClientContext* c) { return stub_->Deregister(c, leave, &left); });
        Say(absl::StrCat("as ", w.worker_id(), ": heartbeat ", b.error_code(),
                         ", deregister ", d.error_code()));
        if (b.error_code() == grpc::StatusCode::UNAVAILABLE) return Gone();
      }
    }
  }

  const std::string token_;
  const TokenLayout layout_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::string id_, session_;
  int answered_ = 0;
  bool registered_ = false;  // once: from then on UNAVAILABLE means the learner is gone
  int startup_tries_ = 0;
};

}  // namespace
}  // namespace duet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  absl::StatusOr<std::string> token = duet::ReadFileToString(FLAGS_auth_token_file);
  absl::StatusOr<duet::TokenLayout> layout = duet::ReadTokenLayout(FLAGS_model);
  if (!token.ok() || !layout.ok()) {
    std::fprintf(stderr, "hostile_worker: %s %s\n", token.status().ToString().c_str(),
                 layout.status().ToString().c_str());
    return 2;
  }
  std::string t = *token;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return duet::Hostile(t, *layout).Run();
}
