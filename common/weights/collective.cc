#include "common/weights/collective.h"

#include <c10/util/Exception.h>
#include <glog/logging.h>

#include <chrono>
#include <exception>
#include <random>
#include <thread>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <utility>
#include <vector>

#ifdef DUET_WITH_NCCL
#include <c10/cuda/CUDAStream.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/base/status_macros.h"

#ifndef USE_C10D_GLOO
#error "collective.cc needs USE_C10D_GLOO (set in common/weights/CMakeLists.txt)"
#endif

namespace duet {
namespace {

// ---- The one adapter layer: c10d / Gloo exceptions -> absl::Status. ----

std::string ExceptionMessage(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

// Picks the most specific code from what c10d/Gloo say: a peer or the store that
// cannot be reached (or drops out) is Unavailable, anything that ran past its deadline
// is DeadlineExceeded, anything else keeps `fallback`.
absl::Status StatusFromException(const std::exception& e, absl::string_view context,
                                 absl::StatusCode fallback) {
  const std::string message = ExceptionMessage(e);
  const std::string lower = absl::AsciiStrToLower(message);
  absl::StatusCode code = fallback;
  if (absl::StrContains(lower, "trying to connect") ||
      absl::StrContains(lower, "connection") || absl::StrContains(lower, "broken pipe") ||
      absl::StrContains(lower, "econnrefused") ||
      absl::StrContains(lower, "closed by peer")) {
    code = absl::StatusCode::kUnavailable;
  } else if (absl::StrContains(lower, "timed out") ||
             absl::StrContains(lower, "timeout")) {
    code = absl::StatusCode::kDeadlineExceeded;
  }
  return absl::Status(code, absl::StrCat(context, ": ", message));
}

std::chrono::milliseconds ToMillis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// c10d 1.13 truncates the store's connect timeout to whole seconds (under one second
// every connect fails at once), so the store gets the timeout rounded up to seconds.
std::chrono::milliseconds StoreTimeout(absl::Duration d) {
  return ToMillis(absl::Ceil(d, absl::Seconds(1)));
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// c10d's store interface over a RendezvousClient, for Gloo's rendezvous. c10d expects a
// store to throw, and a get or wait to block until the key is there: this one polls
// (2 ms doubling to 50 ms) until its timeout, so a remote client never makes the server
// hold a waiting call.
class ClientStore final : public c10d::Store {
 public:
  ClientStore(std::shared_ptr<RendezvousClient> client, std::chrono::milliseconds timeout,
              std::function<bool()> abandon)
      : c10d::Store(timeout), client_(std::move(client)), abandon_(std::move(abandon)) {}

  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    Check(client_->Set(key, std::string(value.begin(), value.end())), "set", key);
  }
  std::vector<uint8_t> get(const std::string& key) override {
    WaitFor({key}, timeout_);
    absl::StatusOr<std::string> v = client_->Get(key);
    Check(v.status(), "get", key);
    return std::vector<uint8_t>(v->begin(), v->end());
  }
  int64_t add(const std::string& key, int64_t value) override {
    absl::StatusOr<int64_t> v = client_->Add(key, value);
    Check(v.status(), "add", key);
    return *v;
  }
  bool deleteKey(const std::string& key) override {
    absl::StatusOr<bool> v = client_->Delete(key);
    Check(v.status(), "delete", key);
    return *v;
  }
  bool check(const std::vector<std::string>& keys) override {
    absl::StatusOr<bool> v = client_->Check(keys);
    Check(v.status(), "check", keys.empty() ? "" : keys[0]);
    return *v;
  }
  int64_t getNumKeys() override {
    absl::StatusOr<int64_t> v = client_->NumKeys();
    Check(v.status(), "count", "");
    return *v;
  }
  void wait(const std::vector<std::string>& keys) override { WaitFor(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    WaitFor(keys, timeout);
  }

 private:
  static void Check(const absl::Status& s, const char* op, const std::string& key) {
    TORCH_CHECK(s.ok(), "rendezvous store ", op, " '", key, "': ", s.ToString());
  }
  void WaitFor(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(2);
    for (;;) {
      absl::StatusOr<bool> there = client_->Check(keys);
      Check(there.status(), "wait", keys.empty() ? "" : keys[0]);
      if (*there) return;
      TORCH_CHECK(
          !abandon_ || !abandon_(),
          "rendezvous abandoned (connection to a member lost) while waiting for '",
          keys.empty() ? "" : keys[0], "'");
      TORCH_CHECK(std::chrono::steady_clock::now() < deadline,
                  "rendezvous store: timed out after ", timeout.count(),
                  " ms waiting for '", keys.empty() ? "" : keys[0], "'");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }

  const std::shared_ptr<RendezvousClient> client_;
  const std::function<bool()> abandon_;
};

absl::Status ValidateOptions(const CollectiveOptions& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size must be >= 1, got ", options.world_size));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " outside [0, ", options.world_size, ")"));
  }
  if (options.store_port < 0 || options.store_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("store_port ", options.store_port, " outside [0, 65535]"));
  }
  const bool hosts = options.host_store && options.rank == 0;
  if (options.store_port == 0 && !hosts && options.rendezvous == nullptr) {
    return absl::InvalidArgumentError(
        "store_port 0 is only valid on rank 0 with host_store: other ranks need the real "
        "port");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout must be positive");
  }
  if (options.store_host.empty()) {
    return absl::InvalidArgumentError("store_host is empty");
  }
  return absl::OkStatus();
}

class ProcessGroupCollective final : public Collective {
 public:
  ProcessGroupCollective(std::string backend, int rank, int world_size,
                         std::chrono::milliseconds timeout,
                         c10::intrusive_ptr<c10d::Store> store,
                         c10::intrusive_ptr<c10d::ProcessGroup> group)
      : backend_(std::move(backend)),
        rank_(rank),
        world_size_(world_size),
        timeout_(timeout),
        store_(std::move(store)),
        group_(std::move(group)) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return backend_; }

  absl::Status Broadcast(torch::Tensor& tensor, int root) override {
    DUET_RETURN_IF_ERROR(CheckCall("Broadcast", tensor, root, /*peer_may_be_me=*/true));
    [[maybe_unused]] const bool want_cuda = backend_ == "nccl";
    if (world_size_ == 1) return absl::OkStatus();

    absl::MutexLock lock(&mu_);
    try {
      std::vector<at::Tensor> tensors = {tensor};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      opts.timeout = timeout_;
      c10::intrusive_ptr<c10d::Work> work = group_->broadcast(tensors, opts);
      work->wait();
#ifdef DUET_WITH_NCCL
      // NCCL's wait only orders the current stream after the collective; block the host
      // too, as the interface promises.
      if (want_cuda)
        c10::cuda::getCurrentCUDAStream(tensor.device().index()).synchronize();
#endif
    } catch (const std::exception& e) {
      return StatusFromException(e, absl::StrCat(backend_, " broadcast from rank ", root),
                                 absl::StatusCode::kInternal);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Pending>> StartSend(const torch::Tensor& tensor, int dst,
                                                     int tag) override {
    return StartPointToPoint(/*send=*/true, tensor, dst, tag);
  }

  absl::StatusOr<std::unique_ptr<Pending>> StartRecv(const torch::Tensor& tensor, int src,
                                                     int tag) override {
    return StartPointToPoint(/*send=*/false, tensor, src, tag);
  }

 private:
  class GroupWork final : public Pending {
   public:
    GroupWork(c10::intrusive_ptr<c10d::Work> work, std::string what,
              std::chrono::milliseconds timeout)
        : work_(std::move(work)), what_(std::move(what)), timeout_(timeout) {}
    ~GroupWork() override {
      if (work_) Wait().IgnoreError();
    }
    absl::Status Wait() override {
      if (!work_) return status_;
      try {
        work_->wait(timeout_);
      } catch (const std::exception& e) {
        status_ = StatusFromException(e, what_, absl::StatusCode::kInternal);
      }
      work_.reset();
      return status_;
    }

   private:
    c10::intrusive_ptr<c10d::Work> work_;
    const std::string what_;
    const std::chrono::milliseconds timeout_;
    absl::Status status_;
  };

  absl::StatusOr<std::unique_ptr<Pending>> StartPointToPoint(bool send,
                                                             const torch::Tensor& tensor,
                                                             int peer, int tag) {
    const char* op = send ? "StartSend" : "StartRecv";
    DUET_RETURN_IF_ERROR(CheckCall(op, tensor, peer, /*peer_may_be_me=*/false));
    if (tag < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": negative tag"));
    const std::string what =
        absl::StrCat(backend_, send ? " send to rank " : " receive from rank ", peer);
    absl::MutexLock lock(&mu_);  // posting only: the wait is the caller's
    try {
      std::vector<at::Tensor> tensors = {tensor};
      c10::intrusive_ptr<c10d::Work> work =
          send ? group_->send(tensors, peer, tag) : group_->recv(tensors, peer, tag);
      return std::unique_ptr<Pending>(new GroupWork(std::move(work), what, timeout_));
    } catch (const std::exception& e) {
      return StatusFromException(e, what, absl::StatusCode::kInternal);
    }
  }

  // What every call checks: a defined, contiguous tensor on the backend's device, and a
  // peer (root, source or destination) inside the group, other than this rank for a
  // point-to-point call.
  absl::Status CheckCall(absl::string_view op, const torch::Tensor& tensor, int peer,
                         bool peer_may_be_me) const {
    if (!tensor.defined())
      return absl::InvalidArgumentError(absl::StrCat(op, " of an undefined tensor"));
    if (peer < 0 || peer >= world_size_ || (!peer_may_be_me && peer == rank_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": rank ", peer, " outside [0, ", world_size_, ")",
          peer_may_be_me ? "" : absl::StrCat(" or this rank (", rank_, ")")));
    }
    if (!tensor.is_contiguous()) {
      return absl::InvalidArgumentError(absl::StrCat(op, " needs a contiguous tensor"));
    }
    const bool want_cuda = backend_ == "nccl";
    if (tensor.is_cuda() != want_cuda) {
      return absl::InvalidArgumentError(
          absl::StrCat(backend_, " moves ", want_cuda ? "CUDA" : "CPU",
                       " tensors, got one on ", tensor.device().str()));
    }
    return absl::OkStatus();
  }

  const std::string backend_;
  const int rank_;
  const int world_size_;
  const std::chrono::milliseconds timeout_;
  // The (prefixed) store the group met through; on the hosting rank it owns the server,
  // which must live as long as the group.
  const c10::intrusive_ptr<c10d::Store> store_;
  // Serializes collectives issued from several threads of this rank.
  absl::Mutex mu_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct StoreServer::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

StoreServer::StoreServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreServer::~StoreServer() = default;

int StoreServer::port() const { return impl_->store->getPort(); }

absl::StatusOr<std::unique_ptr<StoreServer>> StoreServer::Start(int port,
                                                                absl::Duration timeout) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", port, " outside [0, 65535]"));
  }
  if (timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError("timeout must be positive");
  auto impl = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = true;
    opts.numWorkers = c10::nullopt;
    opts.waitWorkers = false;
    opts.timeout = StoreTimeout(timeout);
    // The server binds every interface; its own client connects over loopback.
    impl->store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", opts);
  } catch (const std::exception& e) {
    return StatusFromException(e, absl::StrCat("hosting a TCPStore on port ", port),
                               absl::StatusCode::kUnavailable);
  }
  VLOG(1) << "TCPStore server listening on port " << impl->store->getPort();
  return std::unique_ptr<StoreServer>(new StoreServer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(
    const CollectiveOptions& options) {
  if (options.backend != "gloo" && options.backend != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend \"", options.backend, "\" (want gloo or nccl)"));
  }
#ifndef DUET_WITH_NCCL
  if (options.backend == "nccl") {
    return absl::FailedPreconditionError("this build has no CUDA/NCCL");
  }
#endif
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;

  const bool hosts = options.host_store && options.rank == 0;
  const std::chrono::milliseconds timeout = ToMillis(options.timeout);

  // Store: the given rendezvous, or a TCPStore hosted here (rank 0) or connected to.
  c10::intrusive_ptr<c10d::Store> base_store;
  c10::intrusive_ptr<c10d::TCPStore> tcp_store;
  if (options.rendezvous != nullptr) {
    base_store = c10::make_intrusive<ClientStore>(
        options.rendezvous, StoreTimeout(options.timeout), options.abandon);
  } else {
    try {
      c10d::TCPStoreOptions opts;
      opts.port = static_cast<std::uint16_t>(options.store_port);
      opts.isServer = hosts;
      opts.numWorkers = c10::nullopt;
      opts.waitWorkers = false;
      opts.timeout = StoreTimeout(options.timeout);
      tcp_store = c10::make_intrusive<c10d::TCPStore>(options.store_host, opts);
    } catch (const std::exception& e) {
      return StatusFromException(
          e,
          hosts ? absl::StrCat("hosting a TCPStore on port ", options.store_port)
                : absl::StrCat("connecting to the TCPStore at ", options.store_host, ":",
                               options.store_port),
          absl::StatusCode::kUnavailable);
    }
  }
  if (hosts && tcp_store) {
    VLOG(1) << "rank 0 hosts the TCPStore on port " << tcp_store->getPort();
    if (options.on_store_ready) options.on_store_ready(tcp_store->getPort());
  }
  if (tcp_store) base_store = tcp_store;
  c10::intrusive_ptr<c10d::Store> store =
      c10::make_intrusive<c10d::PrefixStore>(options.group_prefix, base_store);

  // Group: the constructor is the rendezvous; it blocks until every rank joined.
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  try {
    if (options.backend == "gloo") {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      std::string hostname = options.device_hostname;
      if (hostname.empty() && IsLoopback(options.store_host)) hostname = "127.0.0.1";
      gloo_options->devices.push_back(
          hostname.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                           : c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(
          store, options.rank, options.world_size, gloo_options);
    } else {
#ifdef DUET_WITH_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          store, options.rank, options.world_size, nccl_options);
#endif
    }
  } catch (const std::exception& e) {
    return StatusFromException(
        e,
        absl::StrCat(options.backend, " rendezvous of rank ", options.rank, "/",
                     options.world_size, " (prefix \"", options.group_prefix, "\")"),
        absl::StatusCode::kUnavailable);
  }
  VLOG(1) << options.backend << " group \"" << options.group_prefix << "\" rank "
          << options.rank << "/" << options.world_size << " ready";
  return std::unique_ptr<Collective>(
      new ProcessGroupCollective(options.backend, options.rank, options.world_size,
                                 timeout, std::move(store), std::move(group)));
}

absl::StatusOr<std::unique_ptr<Collective::Pending>> Collective::StartSend(
    const torch::Tensor& /*tensor*/, int /*dst*/, int /*tag*/) {
  return absl::UnimplementedError(
      absl::StrCat("this ", backend(), " collective has no point-to-point send"));
}

absl::StatusOr<std::unique_ptr<Collective::Pending>> Collective::StartRecv(
    const torch::Tensor& /*tensor*/, int /*src*/, int /*tag*/) {
  return absl::UnimplementedError(
      absl::StrCat("this ", backend(), " collective has no point-to-point receive"));
}

absl::Status Collective::Recv(const torch::Tensor& tensor, int src, int tag) {
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Pending> receive, StartRecv(tensor, src, tag));
  return receive->Wait();
}

CollectiveFactory* C10dCollectiveFactory() {
  class C10dFactory final : public CollectiveFactory {
   public:
    absl::StatusOr<std::unique_ptr<Collective>> Create(
        const CollectiveOptions& options) override {
      return CreateCollective(options);
    }
  };
  static C10dFactory* const factory = new C10dFactory();
  return factory;
}

std::string NewStorePrefix() {
  std::random_device rd;
  std::string out = "duet-";
  for (int i = 0; i < 4; ++i) out += absl::StrFormat("%08x", rd());
  return out;
}

}  // namespace duet
