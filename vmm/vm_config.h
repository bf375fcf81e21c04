// The one VM configuration model. The CLI, TOML files and the HTTP API all fill this struct;
// the VMM is built only from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=1";

struct DriveConfig {
  std::string path;
  bool read_only = false;
  std::string id;        // serial the guest reads with GET_ID; default: the file name
  bool is_root = false;  // add root=/dev/vda to the command line (must be the first drive)
};

struct VmConfig {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 128;
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline = kDefaultCmdline;
  std::vector<DriveConfig> drives;  // virtio-blk, in guest order (vda, vdb, ...)
};

// Console wiring: where the guest's serial output goes and where its input comes from.
struct ConsoleFds {
  int in = 0;  // -1: no input
  int out = 1;
};

}  // namespace kiln
