// A 48-bit Ethernet MAC address: parsed from and printed as "xx:xx:xx:xx:xx:xx".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace kiln {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  // Six colon-separated pairs of hex digits (either case); nullopt otherwise.
  static std::optional<MacAddress> parse(const std::string& text);
  std::string to_string() const;  // lowercase
  bool is_multicast() const { return bytes[0] & 1; }
  bool is_zero() const { return bytes == std::array<uint8_t, 6>{}; }
  bool operator==(const MacAddress&) const = default;
};

}  // namespace kiln
