#include "base/snapshot/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/snapshot/atomic_file.h"
#include "base/snapshot/bytes.h"
#include "base/unique_fd.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace kiln::snapshot {

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'S', 'N', 'A', 'P'};
constexpr size_t kMinFile = sizeof kMagic + 4 + 4;  // magic, version, ..., CRC

uint32_t crc_of(const uint8_t* p, size_t n) {
  return static_cast<uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), p, n));
}

}  // namespace

HostIdentity HostIdentity::current() {
  HostIdentity h;
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d)) {
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    h.cpu_vendor = vendor;
  }
  if (__get_cpuid(1, &a, &b, &c, &d)) h.cpu_signature = a;
#else
  h.cpu_vendor = "unknown";
#endif
  return h;
}

std::string HostIdentity::describe() const {
  char sig[16];
  std::snprintf(sig, sizeof sig, "%#x", cpu_signature);
  return (cpu_vendor.empty() ? std::string("an unknown") : "a " + cpu_vendor) + " CPU (signature " +
         sig + ")";
}

void StateWriter::add(const std::string& name, std::vector<uint8_t> data) {
  if (name.empty() || name.size() > kMaxSectionName)
    throw kiln::Error("snapshot section name '" + name + "': 1 to 64 bytes");
  if (sections_.size() >= kMaxSections) throw kiln::Error("snapshot: more than 4096 sections");
  if (!sections_.emplace(name, std::move(data)).second)
    throw kiln::Error("snapshot section '" + name + "' given twice");
}

std::vector<uint8_t> StateWriter::encode() const {
  ByteWriter w;
  for (char c : kMagic) w.u8(static_cast<uint8_t>(c));
  w.u32(kFormatVersion);
  w.blob(host_.cpu_vendor);
  w.u32(host_.cpu_signature);
  w.u32(static_cast<uint32_t>(sections_.size()));
  for (const auto& [name, data] : sections_) {
    w.blob(name);
    w.blob(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  }
  std::vector<uint8_t> bytes = w.take();
  if (bytes.size() + 4 > kMaxStateFile) throw kiln::Error("snapshot: the state exceeds 256 MiB");
  uint32_t crc = crc_of(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  return bytes;
}

void StateWriter::commit(const std::string& path) const {
  const std::vector<uint8_t> bytes = encode();
  replace_file_atomically(path, "snapshot " + path,
                          [&](int fd) { write_all(fd, bytes, "snapshot " + path); });
}

StateFile StateFile::load(const std::string& path, const HostIdentity& host) {
  const std::string what = "snapshot " + path;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno(what);
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) throw_errno(what);
  if (!S_ISREG(st.st_mode)) throw kiln::Error(what + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxStateFile)
    throw kiln::Error(what + ": larger than 256 MiB: not a Kiln state file");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(what);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return decode(bytes, what, host);
}

StateFile StateFile::decode(const std::vector<uint8_t>& bytes, const std::string& what,
                            const HostIdentity& host) {
  if (bytes.size() < kMinFile || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw kiln::Error(what + ": not a Kiln state file (no KILNSNAP header)");
  size_t body = bytes.size() - 4;
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= uint32_t{bytes[body + static_cast<size_t>(i)]} << (8 * i);
  if (crc_of(bytes.data(), body) != stored)
    throw kiln::Error(what +
                      ": the checksum does not match: the file is truncated or "
                      "corrupted (take the snapshot again)");
  ByteReader r(bytes.data() + sizeof kMagic, body - sizeof kMagic, what);
  uint32_t version = r.u32();
  if (version != kFormatVersion)
    throw kiln::Error(what + ": format version " + std::to_string(version) +
                      " (this Kiln reads version " + std::to_string(kFormatVersion) + ")");
  StateFile f;
  f.what_ = what;
  f.host_.cpu_vendor = r.blob(32);
  f.host_.cpu_signature = r.u32();
  if (!(f.host_ == host))
    throw kiln::Error(what + ": taken on " + f.host_.describe() + "; this host has " +
                      host.describe() + " (restore it on the same kind of host)");
  uint32_t count = r.u32();
  if (count > kMaxSections) throw kiln::Error(what + ": more than 4096 sections");
  for (uint32_t i = 0; i < count; ++i) {
    std::string name = r.blob(kMaxSectionName);
    std::string data = r.blob(kMaxStateFile);
    if (name.empty() ||
        !f.sections_.emplace(name, std::vector<uint8_t>(data.begin(), data.end())).second)
      throw kiln::Error(what + ": section '" + name + "' is empty-named or repeated");
  }
  r.finish();
  return f;
}

const std::vector<uint8_t>& StateFile::section(const std::string& name) const {
  auto it = sections_.find(name);
  if (it == sections_.end())
    throw kiln::Error(what_ + ": no '" + name + "' section (taken by another Kiln?)");
  return it->second;
}

std::vector<std::string> StateFile::names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : sections_) n.push_back(k);
  return n;
}

}  // namespace kiln::snapshot
