#ifndef DUET_COMMON_WEIGHTS_WEIGHT_MAC_H_
#define DUET_COMMON_WEIGHTS_WEIGHT_MAC_H_

// The keyed checksum of the c10d weight broadcast: a message authentication code that
// only holders of the run's secret can produce, so that weights written into the data
// plane by anyone else (who can reach the Gloo ports but not the authenticated gRPC
// channel) are rejected by every worker.
//
// Construction (standard, no new cryptography):
//   run key      K   = HMAC-SHA256(key = secret, "duet weight-sync v1" 0x00 context)
//   one-time key K_n = HMAC-SHA256(key = K, "duet weight-sync otk" 0x00 nonce)
//   tag              = Poly1305(K_n, message)                       (16 bytes)
// The secret is the run's auth token and the context its random store prefix (itself
// delivered only over the authenticated channel), so a run without a token still has a
// key no outsider of the gRPC channel knows. The sender draws a fresh random 128-bit
// nonce for every broadcast, so a Poly1305 key is never used for two messages.
// Poly1305 runs at ~12 GB/s on one core of this machine (XXH64: ~20 GB/s); see
// docs/benchmarks.md.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace duet {

using WeightMacNonce = std::array<uint8_t, 16>;
using WeightMacTag = std::array<uint8_t, 16>;

// The per-run key. Copyable; holds 32 secret bytes.
class WeightMacKey {
 public:
  static WeightMacKey Derive(std::string_view secret, std::string_view context);

  const std::array<uint8_t, 32>& bytes() const { return bytes_; }

 private:
  std::array<uint8_t, 32> bytes_{};
};

// A fresh nonce from the OS's CSPRNG (dies if there is none: nothing can be keyed then).
WeightMacNonce NewWeightMacNonce();

// Streaming MAC of one message.
// Thread-safety: thread-compatible (one thread at a time may Update).
class WeightMac {
 public:
  WeightMac(const WeightMacKey& key, const WeightMacNonce& nonce);
  ~WeightMac();
  WeightMac(const WeightMac&) = delete;
  WeightMac& operator=(const WeightMac&) = delete;

  void Update(const void* data, size_t len);
  // The tag of everything Updated so far. REQUIRES: called once, last.
  WeightMacTag Final();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Constant-time comparison.
bool TagsEqual(const WeightMacTag& a, const WeightMacTag& b);

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_WEIGHT_MAC_H_
