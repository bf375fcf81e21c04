#include "arch/x86_64/acpi/aml.h"

#include <fmt/format.h>

#include <numeric>

#include "base/error.h"

namespace kiln::acpi::aml {

namespace {

constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kParentPrefixChar = '^';
constexpr uint8_t kReturnOp = 0xa4;
constexpr uint8_t kOnesOp = 0xff;

// Resource descriptor tags (ACPI 6.5, 6.4).
constexpr uint8_t kIrqNoFlagsTag = 0x22;  // small item 0x04, length 2
constexpr uint8_t kIoTag = 0x47;          // small item 0x08, length 7
constexpr uint8_t kEndTag = 0x79;         // small item 0x0f, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;
constexpr uint8_t kExtendedInterruptTag = 0x89;

void append(Bytes& out, const Bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

template <typename T>
void put_le(Bytes& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const Bytes& p : parts) append(out, p);
  return out;
}

// op [PkgLength] body: the form of Scope, Device, Method, Package and Buffer.
Bytes with_pkg_length(std::initializer_list<uint8_t> op, const Bytes& body) {
  Bytes out(op);
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

bool is_lead_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}

Bytes name_seg(std::string_view seg, std::string_view path) {
  if (seg.empty() || seg.size() > 4 || !is_lead_char(seg[0]))
    throw Error(fmt::format("AML name '{}': bad segment '{}'", path, seg));
  Bytes out;
  for (char c : seg) {
    if (!is_lead_char(c) && !(c >= '0' && c <= '9'))
      throw Error(fmt::format("AML name '{}': bad character in '{}'", path, seg));
    out.push_back(static_cast<uint8_t>(c));
  }
  out.resize(4, '_');
  return out;
}

}  // namespace

Bytes pkg_length(size_t content_len) {
  // The encoded value counts its own 1-4 bytes. One byte holds 6 bits; with N following bytes
  // the lead byte holds 4 bits and each following byte 8 more.
  for (size_t n = 1; n <= 4; ++n) {
    const size_t total = content_len + n;
    const size_t limit = n == 1 ? 0x40 : size_t{1} << (4 + 8 * (n - 1));
    if (total >= limit) continue;
    if (n == 1) return {static_cast<uint8_t>(total)};
    Bytes out{static_cast<uint8_t>(((n - 1) << 6) | (total & 0x0f))};
    for (size_t i = 1; i < n; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * (i - 1))));
    return out;
  }
  throw Error(fmt::format("AML package of {} bytes is too long for a PkgLength", content_len));
}

Bytes name_string(std::string_view path) {
  Bytes out;
  std::string_view rest = path;
  if (!rest.empty() && rest[0] == '\\') {
    out.push_back(kRootChar);
    rest.remove_prefix(1);
  } else {
    while (!rest.empty() && rest[0] == '^') {
      out.push_back(kParentPrefixChar);
      rest.remove_prefix(1);
    }
  }
  std::vector<Bytes> segs;
  while (!rest.empty()) {
    const size_t dot = rest.find('.');
    segs.push_back(name_seg(rest.substr(0, dot), path));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
    if (rest.empty()) throw Error(fmt::format("AML name '{}': ends with '.'", path));
  }
  if (segs.empty()) {
    if (out.empty()) throw Error("AML name is empty");
    out.push_back(kZeroOp);  // NullName: the root or parent scope itself
  } else if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    if (segs.size() > 255) throw Error(fmt::format("AML name '{}' has too many segments", path));
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (const Bytes& s : segs) append(out, s);
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  if (value == UINT64_MAX) return {kOnesOp};
  Bytes out;
  if (value <= UINT8_MAX) {
    out.push_back(kBytePrefix);
    put_le(out, static_cast<uint8_t>(value));
  } else if (value <= UINT16_MAX) {
    out.push_back(kWordPrefix);
    put_le(out, static_cast<uint16_t>(value));
  } else if (value <= UINT32_MAX) {
    out.push_back(kDWordPrefix);
    put_le(out, static_cast<uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    put_le(out, value);
  }
  return out;
}

Bytes dword(uint32_t value) {
  Bytes out{kDWordPrefix};
  put_le(out, value);
  return out;
}

Bytes string(std::string_view s) {
  Bytes out{kStringPrefix};
  for (char c : s) {
    const auto b = static_cast<uint8_t>(c);
    if (b == 0 || b > 0x7f) throw Error("AML string holds a NUL or non-ASCII byte");
    out.push_back(b);
  }
  out.push_back(0);
  return out;
}

Bytes eisa_id(std::string_view id) {
  auto hex = [&](char c) -> uint32_t {
    if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0');
    if (c >= 'A' && c <= 'F') return static_cast<uint32_t>(c - 'A' + 10);
    throw Error(fmt::format("EISA id '{}': bad product digit '{}'", id, c));
  };
  if (id.size() != 7) throw Error(fmt::format("EISA id '{}' is not 7 characters", id));
  uint32_t v = 0;
  for (int i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') throw Error(fmt::format("EISA id '{}': bad vendor", id));
    v |= static_cast<uint32_t>(id[i] - '@') << (26 - 5 * i);
  }
  for (int i = 3; i < 7; ++i) v |= hex(id[i]) << (4 * (6 - i));
  // The id is stored big-endian: bytes 0x41 0xd0 0x05 0x01 for PNP0501.
  return dword(__builtin_bswap32(v));
}

Bytes package(const std::vector<Bytes>& elements) {
  if (elements.size() > 255) throw Error("AML package has more than 255 elements");
  Bytes body{static_cast<uint8_t>(elements.size())};
  append(body, concat(elements));
  return with_pkg_length({kPackageOp}, body);
}

Bytes buffer(std::span<const uint8_t> data) {
  Bytes body = integer(data.size());
  body.insert(body.end(), data.begin(), data.end());
  return with_pkg_length({kBufferOp}, body);
}

Bytes name(std::string_view n, const Bytes& object) {
  Bytes out{kNameOp};
  append(out, name_string(n));
  append(out, object);
  return out;
}

Bytes scope(std::string_view n, const std::vector<Bytes>& terms) {
  Bytes body = name_string(n);
  append(body, concat(terms));
  return with_pkg_length({kScopeOp}, body);
}

Bytes device(std::string_view n, const std::vector<Bytes>& terms) {
  Bytes body = name_string(n);
  append(body, concat(terms));
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, body);
}

Bytes method(std::string_view n, uint8_t args, const std::vector<Bytes>& terms) {
  if (args > 7) throw Error(fmt::format("AML method {} with {} arguments (at most 7)", n, args));
  Bytes body = name_string(n);
  body.push_back(args);  // MethodFlags: ArgCount, not serialized, SyncLevel 0
  append(body, concat(terms));
  return with_pkg_length({kMethodOp}, body);
}

Bytes return_value(const Bytes& object) {
  Bytes out{kReturnOp};
  append(out, object);
  return out;
}

Bytes memory32_fixed(bool read_write, uint32_t base, uint32_t size) {
  Bytes out{kMemory32FixedTag, 9, 0, static_cast<uint8_t>(read_write ? 1 : 0)};
  put_le(out, base);
  put_le(out, size);
  return out;
}

Bytes io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  Bytes out{kIoTag, 1};  // Decode16
  put_le(out, min);
  put_le(out, max);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes irq_no_flags(uint8_t irq) {
  if (irq > 15) throw Error(fmt::format("IRQ descriptor for IRQ {} (at most 15)", irq));
  Bytes out{kIrqNoFlagsTag};
  put_le(out, static_cast<uint16_t>(1u << irq));
  return out;
}

Bytes interrupt(InterruptFlags flags, uint32_t gsi) {
  const uint8_t bits = static_cast<uint8_t>((flags.consumer ? 1 : 0) | (flags.edge ? 2 : 0) |
                                            (flags.active_low ? 4 : 0) | (flags.shared ? 8 : 0));
  Bytes out{kExtendedInterruptTag, 6, 0, bits, 1};  // length 6: flags, count, one DWord
  put_le(out, gsi);
  return out;
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
  Bytes data = concat(descriptors);
  data.push_back(kEndTag);
  const uint8_t sum = std::accumulate(data.begin(), data.end(), uint8_t{0});
  data.push_back(static_cast<uint8_t>(0x100 - sum));
  return buffer(data);
}

}  // namespace kiln::acpi::aml
