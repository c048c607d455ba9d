#include "common/weights/weight_mac.h"

#include <glog/logging.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <string>

namespace duet {
namespace {

std::array<uint8_t, 32> HmacSha256(const void* key, size_t key_len,
                                   std::string_view label, const void* data,
                                   size_t data_len) {
  std::string message(label);
  message.push_back('\0');
  message.append(static_cast<const char*>(data), data_len);
  std::array<uint8_t, 32> out{};
  size_t out_len = 0;
  // A zero-length key is fine for HMAC but EVP wants a non-null pointer.
  static const uint8_t kEmpty = 0;
  CHECK(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr,
                  key_len > 0 ? key : &kEmpty, key_len,
                  reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                  out.data(), out.size(), &out_len) != nullptr &&
        out_len == out.size())
      << "HMAC-SHA256 failed in OpenSSL";
  return out;
}

}  // namespace

WeightMacKey WeightMacKey::Derive(std::string_view secret, std::string_view context) {
  WeightMacKey key;
  key.bytes_ = HmacSha256(secret.data(), secret.size(), "duet weight-sync v1",
                          context.data(), context.size());
  return key;
}

WeightMacNonce NewWeightMacNonce() {
  WeightMacNonce nonce{};
  CHECK_EQ(RAND_bytes(nonce.data(), static_cast<int>(nonce.size())), 1)
      << "no random bytes from OpenSSL";
  return nonce;
}

struct WeightMac::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
};

WeightMac::WeightMac(const WeightMacKey& key, const WeightMacNonce& nonce)
    : impl_(std::make_unique<Impl>()) {
  const std::array<uint8_t, 32> one_time =
      HmacSha256(key.bytes().data(), key.bytes().size(), "duet weight-sync otk",
                 nonce.data(), nonce.size());
  impl_->mac = EVP_MAC_fetch(nullptr, "POLY1305", nullptr);
  CHECK(impl_->mac != nullptr) << "OpenSSL has no POLY1305";
  impl_->ctx = EVP_MAC_CTX_new(impl_->mac);
  CHECK(impl_->ctx != nullptr &&
        EVP_MAC_init(impl_->ctx, one_time.data(), one_time.size(), nullptr) == 1)
      << "POLY1305 init failed";
  OPENSSL_cleanse(const_cast<uint8_t*>(one_time.data()), one_time.size());
}

WeightMac::~WeightMac() {
  EVP_MAC_CTX_free(impl_->ctx);
  EVP_MAC_free(impl_->mac);
}

void WeightMac::Update(const void* data, size_t len) {
  if (len == 0) return;
  CHECK_EQ(EVP_MAC_update(impl_->ctx, static_cast<const unsigned char*>(data), len), 1);
}

WeightMacTag WeightMac::Final() {
  WeightMacTag tag{};
  size_t len = 0;
  CHECK_EQ(EVP_MAC_final(impl_->ctx, tag.data(), &len, tag.size()), 1);
  CHECK_EQ(len, tag.size());
  return tag;
}

bool TagsEqual(const WeightMacTag& a, const WeightMacTag& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace duet
