#include "common/weights/rendezvous_store.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace duet {
namespace {

absl::Status CheckKey(const std::string& key) {
  if (key.empty() || key.size() > RendezvousStore::kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous key: ", key.size(),
                                                   " bytes, want 1..",
                                                   RendezvousStore::kMaxKeyBytes));
  }
  return absl::OkStatus();
}

}  // namespace

void RendezvousStore::OpenPrefix(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  open_.insert(prefix + "/");
}

void RendezvousStore::ClosePrefix(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  const std::string under = prefix + "/";
  open_.erase(under);
  for (auto it = values_.lower_bound(under);
       it != values_.end() && absl::StartsWith(it->first, under);) {
    bytes_ -= it->first.size() + it->second.size();
    it = values_.erase(it);
  }
}

std::vector<std::string> RendezvousStore::KeysUnder(const std::string& prefix) const {
  absl::MutexLock lock(&mu_);
  const std::string under = prefix + "/";
  std::vector<std::string> out;
  for (auto it = values_.lower_bound(under);
       it != values_.end() && absl::StartsWith(it->first, under); ++it) {
    out.push_back(it->first);
  }
  return out;
}

absl::Status RendezvousStore::WritableLocked(const std::string& key,
                                             size_t value_bytes) const {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (value_bytes > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous value: ", value_bytes,
                                                   " bytes, at most ", kMaxValueBytes));
  }
  bool open = false;
  for (const std::string& p : open_) open = open || absl::StartsWith(key, p);
  if (!open)
    return absl::PermissionDeniedError(
        "rendezvous key: not under the prefix of an open epoch");
  auto it = values_.find(key);
  const size_t old = it == values_.end() ? 0 : key.size() + it->second.size();
  if (it == values_.end() && values_.size() >= kMaxKeys) {
    return absl::ResourceExhaustedError(
        absl::StrCat("rendezvous store: ", kMaxKeys, " keys held already"));
  }
  if (bytes_ - old + key.size() + value_bytes > kMaxTotalBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("rendezvous store: ", kMaxTotalBytes, " bytes held already"));
  }
  return absl::OkStatus();
}

absl::Status RendezvousStore::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = WritableLocked(key, value.size()); !s.ok()) return s;
  auto [it, inserted] = values_.try_emplace(key);
  if (!inserted) bytes_ -= key.size() + it->second.size();
  it->second = value;
  bytes_ += key.size() + value.size();
  return absl::OkStatus();
}

absl::StatusOr<std::string> RendezvousStore::Get(const std::string& key) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end())
    return absl::NotFoundError(absl::StrCat("rendezvous key '", key, "' not set yet"));
  return it->second;
}

absl::StatusOr<int64_t> RendezvousStore::Add(const std::string& key, int64_t delta) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = WritableLocked(key, 20); !s.ok()) return s;
  int64_t value = 0;
  auto it = values_.find(key);
  if (it != values_.end() && !absl::SimpleAtoi(it->second, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous key '", key, "' does not hold a number"));
  }
  value += delta;
  auto [slot, inserted] = values_.try_emplace(key);
  if (!inserted) bytes_ -= key.size() + slot->second.size();
  slot->second = absl::StrCat(value);
  bytes_ += key.size() + slot->second.size();
  return value;
}

absl::StatusOr<bool> RendezvousStore::Delete(const std::string& key) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end()) return false;
  bytes_ -= it->first.size() + it->second.size();
  values_.erase(it);
  return true;
}

absl::StatusOr<bool> RendezvousStore::Check(const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& k : keys) {
    if (values_.count(k) == 0) return false;
  }
  return true;
}

absl::StatusOr<int64_t> RendezvousStore::NumKeys() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(values_.size());
}

}  // namespace duet
