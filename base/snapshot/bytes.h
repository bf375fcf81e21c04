// Little-endian encoding of snapshot state (base/snapshot/state_file.h holds the sections):
// a writer that appends fixed-size integers and length-prefixed blobs, and a reader that
// takes them back with every length checked against what is left, so a corrupted or hostile
// state file breaks the restore with a message, never reads out of bounds.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kiln::snapshot {

class ByteWriter {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  // A u32 length, then the bytes.
  void blob(std::string_view b);
  // A trivially copyable struct (a KVM ABI struct, say) as a blob of its bytes.
  template <typename T>
  void pod(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    blob(std::string_view(reinterpret_cast<const char*>(&value), sizeof(T)));
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  void put(uint64_t v, int n);
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  // `what` names the state in errors ("snapshot FILE: section vcpu0").
  ByteReader(const uint8_t* data, size_t size, std::string what)
      : p_(data), left_(size), what_(std::move(what)) {}
  uint8_t u8() { return static_cast<uint8_t>(get(1)); }
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  // A blob of at most `max` bytes.
  std::string blob(size_t max);
  // What ByteWriter::pod wrote: a blob of exactly sizeof(T) bytes (`field` names it).
  template <typename T>
  T pod(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    const std::string b = blob(sizeof(T));
    if (b.size() != sizeof(T)) wrong_size(field, b.size(), sizeof(T));
    T value;
    std::memcpy(&value, b.data(), sizeof(T));
    return value;
  }
  // Reads the leading u16 version; kiln::Error unless it is `expected`.
  void expect_version(uint16_t expected);
  size_t left() const { return left_; }
  // Throws kiln::Error unless everything was read (trailing bytes are corruption too).
  void finish() const;

 private:
  uint64_t get(int n);
  [[noreturn]] void short_of(size_t want) const;
  [[noreturn]] void wrong_size(const char* field, size_t got, size_t want) const;
  const uint8_t* p_;
  size_t left_;
  std::string what_;
};

}  // namespace kiln::snapshot
