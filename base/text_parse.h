// Small parsers for values users and kernel command lines write, header-only so the guest
// agent (which links nothing of base/) shares them with the host.
#pragma once

#include <arpa/inet.h>

#include <string>

namespace kiln {

// A dotted IPv4 address ("10.0.0.1"), nothing else.
inline bool is_ipv4(const std::string& a) {
  in_addr x;
  return inet_pton(AF_INET, a.c_str(), &x) == 1;
}

// A decimal number of at most 9 digits within [lo, hi]; -1 for anything else.
inline long parse_bounded(const std::string& v, long lo, long hi) {
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  long n = std::stol(v);
  return n < lo || n > hi ? -1 : n;
}

}  // namespace kiln
