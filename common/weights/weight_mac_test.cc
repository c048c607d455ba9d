#include "common/weights/weight_mac.h"

#include <gtest/gtest.h>

#include <string>

namespace duet {
namespace {

WeightMacTag TagOf(const WeightMacKey& key, const WeightMacNonce& nonce,
                   const std::string& message) {
  WeightMac mac(key, nonce);
  mac.Update(message.data(), message.size());
  return mac.Final();
}

TEST(WeightMacTest, SameKeyNonceAndMessageGiveTheSameTagInAnyPieces) {
  const WeightMacKey key = WeightMacKey::Derive("secret", "context");
  const WeightMacNonce nonce = NewWeightMacNonce();
  const std::string message(100000, 'w');
  WeightMac pieces(key, nonce);
  pieces.Update(message.data(), 7);
  pieces.Update(message.data() + 7, 0);
  pieces.Update(message.data() + 7, message.size() - 7);
  EXPECT_TRUE(TagsEqual(pieces.Final(), TagOf(key, nonce, message)));
}

TEST(WeightMacTest, EveryInputChangesTheTag) {
  const WeightMacKey key = WeightMacKey::Derive("secret", "context");
  const WeightMacNonce nonce = NewWeightMacNonce();
  const WeightMacTag tag = TagOf(key, nonce, "weights");
  EXPECT_FALSE(
      TagsEqual(tag, TagOf(WeightMacKey::Derive("secreT", "context"), nonce, "weights")));
  EXPECT_FALSE(
      TagsEqual(tag, TagOf(WeightMacKey::Derive("secret", "contexT"), nonce, "weights")));
  EXPECT_FALSE(TagsEqual(tag, TagOf(key, NewWeightMacNonce(), "weights")));
  EXPECT_FALSE(TagsEqual(tag, TagOf(key, nonce, "weightS")));
}

TEST(WeightMacTest, KeyDerivationSeparatesSecretFromContext) {
  // "ab" + "c" and "a" + "bc" must not collide (the label and a separator are hashed).
  EXPECT_NE(WeightMacKey::Derive("ab", "c").bytes(),
            WeightMacKey::Derive("a", "bc").bytes());
  // An empty secret (a run without a token) still gives a key that depends on the
  // context.
  EXPECT_NE(WeightMacKey::Derive("", "p1").bytes(),
            WeightMacKey::Derive("", "p2").bytes());
}

TEST(WeightMacTest, NoncesAreFresh) {
  EXPECT_NE(NewWeightMacNonce(), NewWeightMacNonce());
}

}  // namespace
}  // namespace duet
