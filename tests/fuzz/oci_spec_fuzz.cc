// libFuzzer target for kiln-oci's bundle files, which whoever creates a container writes: the
// text as config.json through read_spec (the bundle directory "/", so a root.path of "." or
// "/" passes the root check and the rest is reached) and as a process.json through
// read_process_text. Each is either refused with a UsageError or read into values that hold
// the spec reader's bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "oci/spec.h"

namespace {

void check(const kiln::agent::Start& s) {
  if (s.argv.empty() || s.cwd.empty() || s.cwd[0] != '/' || s.groups.size() > 64 ||
      s.rlimits.size() > 16)
    abort();
  for (const auto& l : s.rlimits)
    if (l.soft > l.hard) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  kiln::sandbox::RunOptions defaults;
  try {
    kiln::oci::Bundle b = kiln::oci::read_spec(text, "/", defaults);
    check(b.process);
    if (b.run.cpus < 1 || b.run.cpus > 254 || b.run.memory < 32 || b.run.memory > 65536 + 64 ||
        b.run.tmpfs.size() > 16 || b.run.volumes.size() > 16 || b.run.hostname.size() > 64 ||
        b.rootfs.empty() || b.rootfs[0] != '/')
      abort();
  } catch (const kiln::UsageError&) {
  }
  try {
    check(kiln::oci::read_process_text(text, "process.json"));
  } catch (const kiln::UsageError&) {
  }
  return 0;
}
