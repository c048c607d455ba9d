#include "common/metrics/metrics_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/metrics/catalogue.h"
#include "common/metrics/process_metrics.h"

#ifndef DUET_VERSION
#define DUET_VERSION "unknown"
#endif
#ifndef DUET_REVISION
#define DUET_REVISION "unknown"
#endif

namespace duet::metrics {
namespace {

constexpr size_t kMaxHeadBytes = 8192;
constexpr size_t kMaxConnections = 32;
constexpr absl::Duration kClientTimeout = absl::Seconds(5);

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Splits "HOST:PORT" ("[V6]:PORT" for IPv6) into host and port.
absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (address.empty() || colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': want HOST:PORT"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  if (!absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': bad port"));
  }
  return absl::OkStatus();
}

std::string Response(int code, const char* reason, const std::string& content_type,
                     const std::string& body, bool head_only,
                     const char* extra_header = "") {
  std::string out =
      absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                   "\r\nContent-Length: ", body.size(), "\r\n", extra_header,
                   "Connection: close\r\n\r\n");
  if (!head_only) out += body;
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry,
    Clock* clock) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(),
                                 &hints, &found);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': ", gai_strerror(rc)));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::move(registry);
  server->clock_ = clock;
  std::string error = "no address";
  for (addrinfo* ai = found; ai != nullptr && server->listen_fd_ < 0; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, /*backlog=*/64) != 0) {
      error = std::strerror(errno);
      CloseFd(fd);
      continue;
    }
    server->listen_fd_ = fd;
  }
  freeaddrinfo(found);
  if (server->listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve /metrics on ", address, ": ", error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve /metrics on ", address, ": ", std::strerror(errno)));
  }
  server->port_ = ntohs(bound.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics server pipe: ", std::strerror(errno)));
  }
  server->wake_read_fd_ = pipe_fds[0];
  server->wake_write_fd_ = pipe_fds[1];
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

MetricsServer::~MetricsServer() {
  // Stop serving before the hooks' captured state goes away.
  stop_.store(true);
  if (thread_.joinable()) {
    const char byte = 1;
    (void)!write(wake_write_fd_, &byte, 1);
    thread_.join();
  }
  CloseFd(listen_fd_);
  CloseFd(wake_read_fd_);
  CloseFd(wake_write_fd_);
}

absl::Status MetricsServer::WritePortFile(const std::string& path) const {
  return WriteFileAtomically(path, absl::StrCat(port_, "\n"));
}

void MetricsServer::AddRefreshHook(std::function<void()> hook) {
  absl::MutexLock lock(&hooks_mu_);
  hooks_.push_back(std::move(hook));
}

std::string MetricsServer::Render() {
  {
    absl::MutexLock lock(&hooks_mu_);
    for (const auto& h : hooks_) h();
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& f : ProcessCollector().Collect())
    families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

namespace {

// One client connection of the accept loop: read the head, write the answer, then read
// until the client closes (so that unread input does not turn the close into a reset).
struct Connection {
  enum class State { kReading, kWriting, kDraining };
  int fd = -1;
  State state = State::kReading;
  std::string in;
  std::string out;
  size_t sent = 0;
  absl::Time deadline;
};

}  // namespace

void MetricsServer::Serve() {
  std::vector<Connection> conns;
  std::vector<pollfd> fds;
  char buf[4096];
  while (!stop_.load()) {
    // Drop the clients past their deadline; wake for the next deadline. The clock is read
    // here, after the previous poll returned, never before a poll that may block.
    const absl::Time now = clock_->Now();
    int timeout_ms = -1;
    for (auto it = conns.begin(); it != conns.end();) {
      if (it->deadline <= now) {
        CloseFd(it->fd);
        it = conns.erase(it);
        continue;
      }
      const int64_t left = absl::ToInt64Milliseconds(it->deadline - now) + 1;
      if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
      ++it;
    }
    fds.clear();
    fds.push_back({wake_read_fd_, POLLIN, 0});
    // Past kMaxConnections the listening socket waits (the kernel's backlog holds the
    // rest).
    fds.push_back({conns.size() < kMaxConnections ? listen_fd_ : -1, POLLIN, 0});
    for (const Connection& c : conns) {
      fds.push_back(
          {c.fd,
           static_cast<short>(c.state == Connection::State::kWriting ? POLLOUT : POLLIN),
           0});
    }
    const int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) return;
    if (n <= 0) continue;
    if (fds[0].revents != 0) return;
    for (size_t i = 0; i < conns.size(); ++i) {
      Connection& c = conns[i];
      const short revents = fds[i + 2].revents;
      if (revents == 0) continue;
      if (c.state != Connection::State::kWriting) {
        const ssize_t got = recv(c.fd, buf, sizeof(buf), 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got <= 0 || c.in.size() + got > 4 * kMaxHeadBytes) {
          CloseFd(c.fd);  // closed, failed, or flooding: done with it
          continue;
        }
        c.in.append(buf, static_cast<size_t>(got));
        if (c.state == Connection::State::kDraining) continue;
        if (c.in.find("\r\n\r\n") == std::string::npos &&
            c.in.find("\n\n") == std::string::npos && c.in.size() <= kMaxHeadBytes) {
          continue;
        }
        c.out = Answer(c.in);
        c.state = Connection::State::kWriting;
      }
      const ssize_t put =
          send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (put < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (put <= 0) {
        CloseFd(c.fd);
        continue;
      }
      c.sent += static_cast<size_t>(put);
      if (c.sent == c.out.size()) {
        shutdown(c.fd, SHUT_WR);
        c.state = Connection::State::kDraining;
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [](const Connection& c) { return c.fd < 0; }),
                conns.end());
    if ((fds[1].revents & POLLIN) != 0) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      // On EAGAIN, ECONNABORTED or EMFILE: try again at the next poll.
      // The deadline counts from now, not from before the poll: an idle server's poll
      // blocks for as long as the scrape interval.
      if (fd >= 0) {
        conns.push_back(
            {fd, Connection::State::kReading, {}, {}, 0, clock_->Now() + kClientTimeout});
      }
    }
  }
  for (Connection& c : conns) CloseFd(c.fd);
}

std::string MetricsServer::Answer(const std::string& head) {
  const std::string text = "text/plain; charset=utf-8";
  const size_t end = std::min(head.find("\r\n\r\n"), head.find("\n\n"));
  if (end == std::string::npos || end > kMaxHeadBytes)
    return Response(431, "Request Header Fields Too Large", text,
                    "request head too large\n", false);
  const std::vector<std::string> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(head.substr(0, head.find('\n'))), ' ',
                     absl::SkipEmpty());
  if (parts.size() != 3 || !absl::StartsWith(parts[2], "HTTP/")) {
    return Response(400, "Bad Request", text, "bad request\n", false);
  }
  const bool head_only = parts[0] == "HEAD";
  if (parts[0] != "GET" && !head_only) {
    return Response(405, "Method Not Allowed", text, "only GET\n", false,
                    "Allow: GET, HEAD\r\n");
  }
  if (parts[1].substr(0, parts[1].find('?')) != "/metrics") {
    return Response(404, "Not Found", text, "not found; try /metrics\n", head_only);
  }
  return Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", Render(),
                  head_only);
}

double UnixNow() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RegisterProcessMetrics(Registry& registry, const std::string& role) {
  prometheus::BuildGauge()
      .Name("duet_build_info")
      .Help("Always 1; says what runs.")
      .Register(registry)
      .Add({{"role", role}, {"version", DUET_VERSION}, {"revision", DUET_REVISION}})
      .Set(1);
  prometheus::BuildGauge()
      .Name("duet_process_start_time_seconds")
      .Help("When the process started (Unix seconds).")
      .Register(registry)
      .Add({{"role", role}})
      .SetToCurrentTime();
}

}  // namespace duet::metrics
