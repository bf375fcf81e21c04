// A host directory shared into a sandbox (-v, and kiln-oci's directory bind mounts) and a host
// file bound on a guest file. Parsed here, with no other dependency, so kiln-oci's spec reader
// (and its fuzz target) links alone.
#pragma once

#include <string>

namespace kiln::sandbox {

struct Volume {
  std::string host, guest;
  bool read_only = false;
};

// A host file bind-mounted on a guest file (kiln-oci: the engine's /etc/hosts, ...). Its
// directory is shared read-only, so the file is read-only in the guest and the guest cannot
// reach the directory's other files for writing.
struct FileBind {
  std::string host, guest;
};

// -v HOSTDIR:GUESTDIR[:ro]; kiln::Error naming the value when it is not one.
Volume parse_volume(const std::string& v);

}  // namespace kiln::sandbox
