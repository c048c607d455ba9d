#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"

namespace duet {

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t log_every)
    : label_(std::move(label)),
      total_(total),
      log_every_(log_every),
      tty_(isatty(STDERR_FILENO)) {}

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

void ProgressBar::Update(int64_t done, const std::string& suffix, double elapsed) {
  if (first_done_ < 0) first_done_ = done - 1;
  const bool last = done >= total_;
  if (!tty_ && !last && done % log_every_ != 0) return;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : kWidth;
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  const int64_t progressed = done - first_done_;
  const double eta = progressed > 0 ? elapsed * (total_ - done) / progressed : 0;
  std::string line =
      absl::StrFormat("%s [%s] %d/%d %s | %s elapsed, ETA %s", label_, bar, done, total_,
                      suffix, FormatDuration(elapsed), FormatDuration(eta));
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), last ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace duet
