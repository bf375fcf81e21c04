// The one VM configuration model. The CLI, TOML files and the HTTP API all fill this struct;
// the VMM is built only from it.
#pragma once

#include <cstdint>
#include <string>

namespace kiln {

inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=1";

struct VmConfig {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 128;
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline = kDefaultCmdline;
};

// Console wiring: where the guest's serial output goes and where its input comes from.
struct ConsoleFds {
  int in = 0;  // -1: no input
  int out = 1;
};

}  // namespace kiln
