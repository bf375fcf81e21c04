// A snapshot's state file: named sections (the VM, each vCPU, each device) in one file that is
// versioned, checksummed (CRC-32 over all of it) and stamped with the host CPU it was taken
// on. It is written to a temporary file beside its path, fsynced, renamed over the path and
// the directory fsynced, so a crash mid-snapshot leaves the old file or none, never one that
// loads. Reading checks the size, the checksum, the version and the host CPU before any
// section is handed out, naming the problem. Guest memory is not here: it goes to its own
// file, mapped at restore.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::snapshot {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kMaxStateFile = 256u << 20;
inline constexpr size_t kMaxSections = 4096;
inline constexpr size_t kMaxSectionName = 64;

// What a restore must run on: the CPU's vendor and its family/model/stepping signature
// (x86 CPUID leaf 1 EAX): saved MSRs and CPUID are only meaningful there.
struct HostIdentity {
  std::string cpu_vendor;
  uint32_t cpu_signature = 0;
  static HostIdentity current();
  bool operator==(const HostIdentity&) const = default;
  std::string describe() const;
};

class StateWriter {
 public:
  explicit StateWriter(HostIdentity host = HostIdentity::current()) : host_(std::move(host)) {}
  // A section; names are 1 to 64 bytes and unique (kiln::Error otherwise).
  void add(const std::string& name, std::vector<uint8_t> data);
  // The file's bytes (what commit writes).
  std::vector<uint8_t> encode() const;
  // Writes `path` atomically (see above). Throws kiln::Error naming the step; `path` is then
  // as it was and no temporary file is left.
  void commit(const std::string& path) const;

 private:
  HostIdentity host_;
  std::map<std::string, std::vector<uint8_t>> sections_;
};

class StateFile {
 public:
  // Reads and checks `path`; kiln::Error ("snapshot PATH: ...") if it is missing, truncated,
  // corrupted, of another format version or taken on another kind of CPU than `host`.
  static StateFile load(const std::string& path,
                        const HostIdentity& host = HostIdentity::current());
  // The same over bytes in memory (`what` names them in errors).
  static StateFile decode(const std::vector<uint8_t>& bytes, const std::string& what,
                          const HostIdentity& host);
  bool has(const std::string& name) const { return sections_.count(name) > 0; }
  // A section; kiln::Error naming it if the file has none.
  const std::vector<uint8_t>& section(const std::string& name) const;
  std::vector<std::string> names() const;
  const HostIdentity& host() const { return host_; }

 private:
  std::string what_;
  HostIdentity host_;
  std::map<std::string, std::vector<uint8_t>> sections_;
};

}  // namespace kiln::snapshot
