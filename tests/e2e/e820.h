// The e820 test guest's lines ("E820 <addr hex> <size hex> <type>"), for the tests that boot
// it with a memory size (boot_test.cc from the command line, api_test.cc through the API).
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::e2e {

struct E820Entry {
  uint64_t addr, size;
  int type;
};

inline std::vector<E820Entry> parse_e820(const std::string& out) {
  std::vector<E820Entry> entries;
  std::istringstream in(out);
  std::string word;
  while (in >> word) {
    if (word != "E820") continue;
    E820Entry e{};
    std::string a, s;
    in >> a >> s >> e.type;
    e.addr = std::stoull(a, nullptr, 16);
    e.size = std::stoull(s, nullptr, 16);
    entries.push_back(e);
  }
  return entries;
}

// The RAM (type 1) the map gives.
inline uint64_t e820_ram(const std::vector<E820Entry>& entries) {
  uint64_t ram = 0;
  for (const E820Entry& e : entries)
    if (e.type == 1) ram += e.size;
  return ram;
}

}  // namespace kiln::e2e
