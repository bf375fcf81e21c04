// A small builder for ACPI Machine Language (AML) byte code, enough for Kiln's DSDT: names,
// integers, strings, packages, Name/Scope/Device/Method/Return and resource templates
// (Memory32Fixed, Extended Interrupt, IRQ, IO). Each function returns the encoded bytes of one
// term; terms nest by passing their bytes to the enclosing term (ACPI 6.5, chapter 20).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace kiln::acpi::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength for `content_len` bytes following it: 1 to 4 bytes, and the encoded length counts
// the PkgLength bytes themselves. Throws kiln::Error above 2^28 - 1.
Bytes pkg_length(size_t content_len);

// NameString: "\" root prefix, "^" parent prefixes, then dot-separated segments of up to four
// characters ('A'-'Z', '0'-'9', '_'; not starting with a digit), padded with '_'. "_SB",
// "\\_SB.COM1", "^VR00". Throws kiln::Error on a bad name.
Bytes name_string(std::string_view path);

// Integers in the smallest encoding: ZeroOp, OneOp, OnesOp (all ones, 64 bits), then the
// Byte/Word/DWord/QWord prefixes.
Bytes integer(uint64_t value);
Bytes dword(uint32_t value);  // always DWordPrefix (fixed-size fields)
// String: the bytes plus NUL. Throws kiln::Error for a NUL or non-ASCII byte.
Bytes string(std::string_view s);
// EisaId("PNP0501"): the compressed 32-bit EISA id as a DWord. Throws on a malformed id.
Bytes eisa_id(std::string_view id);

Bytes package(const std::vector<Bytes>& elements);  // at most 255 elements
Bytes buffer(std::span<const uint8_t> data);
Bytes name(std::string_view name, const Bytes& object);
Bytes scope(std::string_view name, const std::vector<Bytes>& terms);
Bytes device(std::string_view name, const std::vector<Bytes>& terms);
// Method with `args` (0-7) arguments, not serialized.
Bytes method(std::string_view name, uint8_t args, const std::vector<Bytes>& terms);
Bytes return_value(const Bytes& object);

// Resource descriptors for a resource template.
Bytes memory32_fixed(bool read_write, uint32_t base, uint32_t size);
Bytes io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);  // 16-bit decode
Bytes irq_no_flags(uint8_t irq);                                          // IRQNoFlags() {irq}
struct InterruptFlags {
  bool consumer = true;
  bool edge = true;
  bool active_low = false;
  bool shared = false;
};
// Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi} (Extended Interrupt).
Bytes interrupt(InterruptFlags flags, uint32_t gsi);
// ResourceTemplate(): a Buffer holding the descriptors and an End Tag whose checksum byte makes
// the template's bytes sum to zero.
Bytes resource_template(const std::vector<Bytes>& descriptors);

}  // namespace kiln::acpi::aml
