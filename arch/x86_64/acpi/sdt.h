// Byte-level helpers shared by Kiln's ACPI tables: little-endian appends, the 36-byte system
// description table header, Generic Address Structures and checksums.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace kiln::acpi {

using Bytes = std::vector<uint8_t>;

inline constexpr size_t kSdtHeaderSize = 36;
inline constexpr std::string_view kOemId = "KILN  ";         // 6 bytes
inline constexpr std::string_view kOemTableId = "KILNVM  ";  // 8 bytes
inline constexpr std::string_view kCreatorId = "KILN";       // 4 bytes
inline constexpr uint32_t kOemRevision = 1;
inline constexpr uint32_t kCreatorRevision = 1;

void put_u8(Bytes& out, uint8_t v);
void put_u16(Bytes& out, uint16_t v);
void put_u32(Bytes& out, uint32_t v);
void put_u64(Bytes& out, uint64_t v);
void put_chars(Bytes& out, std::string_view s);  // the characters, no NUL
void set_u32(Bytes& out, size_t offset, uint32_t v);
void set_u64(Bytes& out, size_t offset, uint64_t v);

// The value that makes `bytes` plus it sum to zero (mod 256).
uint8_t checksum_of(std::span<const uint8_t> bytes);

// A table header with `signature` (4 characters) and `revision`; length and checksum are filled
// in by finish_table.
Bytes sdt_header(std::string_view signature, uint8_t revision);
// Sets the header's length to the table's size and its checksum so all bytes sum to zero.
void finish_table(Bytes& table);

// Generic Address Structure (12 bytes) for an 8-bit register in system I/O space.
void put_gas_io8(Bytes& out, uint16_t port);

}  // namespace kiln::acpi
