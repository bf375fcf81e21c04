#include "base/snapshot/bytes.h"

#include "base/error.h"

namespace kiln::snapshot {

void ByteWriter::put(uint64_t v, int n) {
  for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void ByteWriter::blob(std::string_view b) {
  u32(static_cast<uint32_t>(b.size()));
  bytes_.insert(bytes_.end(), b.begin(), b.end());
}

uint64_t ByteReader::get(int n) {
  if (left_ < static_cast<size_t>(n)) short_of(static_cast<size_t>(n));
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{p_[i]} << (8 * i);
  p_ += n;
  left_ -= static_cast<size_t>(n);
  return v;
}

std::string ByteReader::blob(size_t max) {
  uint32_t n = u32();
  if (n > max)
    throw kiln::Error(what_ + ": a field of " + std::to_string(n) + " bytes (at most " +
                      std::to_string(max) + ")");
  if (left_ < n) short_of(n);
  std::string b(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  left_ -= n;
  return b;
}

void ByteReader::expect_version(uint16_t expected) {
  if (const uint16_t v = u16(); v != expected)
    throw kiln::Error(what_ + ": version " + std::to_string(v) + " (this Kiln reads " +
                      std::to_string(expected) + ")");
}

void ByteReader::wrong_size(const char* field, size_t got, size_t want) const {
  throw kiln::Error(what_ + ": " + field + " is " + std::to_string(got) + " bytes, not " +
                    std::to_string(want));
}

void ByteReader::finish() const {
  if (left_)
    throw kiln::Error(what_ + ": " + std::to_string(left_) + " bytes more than its fields");
}

void ByteReader::short_of(size_t want) const {
  throw kiln::Error(what_ + ": ends " + std::to_string(want - left_) +
                    " bytes short of its fields");
}

}  // namespace kiln::snapshot
