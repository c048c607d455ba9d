#ifndef DUET_TOOLS_PROGRESS_H_
#define DUET_TOOLS_PROGRESS_H_

#include <cstdint>
#include <string>

namespace duet {

// A one-line progress bar on stderr: redrawn in place on a terminal, printed as a plain
// line every `log_every` updates (and at the end) otherwise, so logs stay readable.
// Thread-compatible.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, int64_t log_every);
  // `done` of total, with a free-form suffix (loss, throughput, ...).
  void Update(int64_t done, const std::string& suffix, double elapsed_seconds);

 private:
  std::string label_;
  int64_t total_;
  int64_t log_every_;
  bool tty_;
  int64_t first_done_ = -1;  // `done` before the first update (a resumed run starts late)
};

// "1m05s" style.
std::string FormatDuration(double seconds);

}  // namespace duet

#endif  // DUET_TOOLS_PROGRESS_H_
