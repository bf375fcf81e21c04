#include "arch/x86_64/acpi/sdt.h"

#include <numeric>

namespace kiln::acpi {

namespace {
constexpr size_t kLengthOffset = 4;
constexpr size_t kChecksumOffset = 9;
constexpr uint8_t kSystemIoSpace = 1;
constexpr uint8_t kByteAccess = 1;
}  // namespace

void put_u8(Bytes& out, uint8_t v) {
  out.push_back(v);
}
void put_u16(Bytes& out, uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_chars(Bytes& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}
void set_u32(Bytes& out, size_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.at(offset + i) = static_cast<uint8_t>(v >> (8 * i));
}
void set_u64(Bytes& out, size_t offset, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.at(offset + i) = static_cast<uint8_t>(v >> (8 * i));
}

uint8_t checksum_of(std::span<const uint8_t> bytes) {
  const uint8_t sum = std::accumulate(bytes.begin(), bytes.end(), uint8_t{0});
  return static_cast<uint8_t>(0x100 - sum);
}

Bytes sdt_header(std::string_view signature, uint8_t revision) {
  Bytes out;
  put_chars(out, signature.substr(0, 4));
  put_u32(out, 0);  // length: finish_table
  put_u8(out, revision);
  put_u8(out, 0);  // checksum: finish_table
  put_chars(out, kOemId);
  put_chars(out, kOemTableId);
  put_u32(out, kOemRevision);
  put_chars(out, kCreatorId);
  put_u32(out, kCreatorRevision);
  return out;
}

void finish_table(Bytes& table) {
  set_u32(table, kLengthOffset, static_cast<uint32_t>(table.size()));
  table.at(kChecksumOffset) = 0;
  table.at(kChecksumOffset) = checksum_of(table);
}

void put_gas_io8(Bytes& out, uint16_t port) {
  put_u8(out, kSystemIoSpace);
  put_u8(out, 8);  // register bit width
  put_u8(out, 0);  // bit offset
  put_u8(out, kByteAccess);
  put_u64(out, port);
}

}  // namespace kiln::acpi
