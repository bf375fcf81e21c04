// fs_bench: virtio-fs request throughput through Kiln's device model (FsDevice, its mmio
// transport and FUSE server), without a guest or KVM, beside the same operations done directly
// on the host directory in the same run.
//
// A host-side FUSE driver (tests/support/fuse_driver.h) plays Linux's virtiofs driver: one chain
// per request (header + arguments readable, out header + reply in 64 KiB buffers writable),
// "kicked" by calling MmioTransport::process_queue as the event loop would.
//   - 1 MiB sequential READs of a cached file (warmed first), beside pread(2) of 1 MiB;
//   - 1 MiB sequential WRITEs (page cache), beside pwrite(2);
//   - small files: CREATE+RELEASE, LOOKUP+FORGET (a stat of an uncached name), UNLINK, beside
//     open(O_CREAT)+close, fstatat, unlinkat.
//
// Usage: fs_bench [DIR]   (works in a fresh directory under DIR, default $TMPDIR or /tmp)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "devices/virtio/fs/fs_device.h"
#include "tests/support/fuse_driver.h"

namespace {

using kiln::testsupport::FuseArgs;
using kiln::testsupport::FuseDriver;
using kiln::testsupport::FuseReply;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kFileBytes = 256 * kMiB;
constexpr double kSeconds = 2.0;
constexpr int kSmallFiles = 5000;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fs_bench: %s\n", what.c_str());
  std::exit(1);
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Row {
  const char* name;
  const char* unit;
  double kiln, host;
};

void print(const Row& r) {
  std::printf("%-30s %11.0f %-5s %11.0f %-5s %9.2f\n", r.name, r.kiln, r.unit, r.host, r.unit,
              r.kiln / r.host);
}

uint64_t entry_id(const FuseReply& r, const char* what) {
  if (r.error() != 0) die(std::string(what) + " failed: " + std::strerror(-r.error()));
  return r.as<fuse_entry_out>().nodeid;
}

// 1 MiB sequential reads or writes through the device and with pread/pwrite on the host, in
// alternating rounds of 32 (so both sides see the same machine load) for ~2 x kSeconds; MB/s.
Row sequential(FuseDriver& fs, const std::string& dir, bool write) {
  const std::vector<uint8_t> chunk(kMiB, 0x5a);
  uint64_t node = 0, fh = 0;
  if (write) {
    fuse_create_in in{};
    in.flags = O_RDWR;
    in.mode = 0644;
    const FuseReply r = fs.call(FUSE_CREATE, 1, FuseArgs().obj(in).str("written"));
    node = entry_id(r, "CREATE");
    struct Out {
      fuse_entry_out e;
      fuse_open_out o;
    };
    fh = r.as<Out>().o.fh;
  } else {
    node = entry_id(fs.lookup(1, "cached"), "LOOKUP");
    const FuseReply o = fs.open(node, O_RDONLY);
    if (o.error()) die("OPEN failed");
    fh = o.as<fuse_open_out>().fh;
  }
  const std::string path = dir + (write ? "/host-written" : "/cached");
  const int fd =
      ::open(path.c_str(), write ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC), 0644);
  if (fd < 0) die(path + ": " + std::strerror(errno));
  std::vector<uint8_t> buf(chunk);
  const uint64_t chunks = kFileBytes / kMiB;
  constexpr int kRound = 32;
  uint64_t ops = 0;
  double kiln_s = 0, host_s = 0;
  while (kiln_s < kSeconds) {
    auto t = Clock::now();
    for (int i = 0; i < kRound; ++i) {
      const uint64_t off = ((ops + i) % chunks) * kMiB;
      const FuseReply r =
          write ? fs.write(node, fh, off, chunk) : fs.read(node, fh, off, kMiB, false);
      if (r.error() != 0 || (!write && r.used != 16 + kMiB) ||
          (write && r.as<fuse_write_out>().size != kMiB))
        die(write ? "WRITE failed" : "READ failed");
    }
    kiln_s += since(t);
    t = Clock::now();
    for (int i = 0; i < kRound; ++i) {
      const off_t off = static_cast<off_t>(((ops + i) % chunks) * kMiB);
      const ssize_t n =
          write ? ::pwrite(fd, buf.data(), kMiB, off) : ::pread(fd, buf.data(), kMiB, off);
      if (n != static_cast<ssize_t>(kMiB)) die("host pread/pwrite failed");
    }
    host_s += since(t);
    ops += kRound;
  }
  ::close(fd);
  const double mb = static_cast<double>(ops) * kMiB / 1e6;
  return {write ? "1MiB seq write (page cache)" : "1MiB seq read (cached)", "MB/s", mb / kiln_s,
          mb / host_s};
}

// Small-file metadata rates, in alternating rounds of kRound files per side.
void small_files(FuseDriver& fs, const std::string& dir) {
  const uint64_t sub = entry_id(
      fs.call(FUSE_MKDIR, 1, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("small")), "MKDIR");
  const std::string host_dir = dir + "/host-small";
  std::filesystem::create_directory(host_dir);
  const int hdir = ::open(host_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (hdir < 0) die("host dir");
  auto name = [](int i) { return "f" + std::to_string(i); };
  constexpr int kRound = 250;
  struct Out {
    fuse_entry_out e;
    fuse_open_out o;
  };
  double k[3] = {}, h[3] = {};
  for (int base = 0; base < kSmallFiles; base += kRound) {
    auto t = Clock::now();
    for (int i = base; i < base + kRound; ++i) {
      const FuseReply r = fs.create(sub, name(i), O_WRONLY, 0644);
      const auto out = r.as<Out>();
      if (r.error() || fs.release(out.e.nodeid, out.o.fh).error()) die("CREATE/RELEASE failed");
      fs.forget(out.e.nodeid, 1);
    }
    k[0] += since(t);
    t = Clock::now();
    for (int i = base; i < base + kRound; ++i) {
      const int fd = ::openat(hdir, name(i).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) die("host create");
      ::close(fd);
    }
    h[0] += since(t);
  }
  for (int base = 0; base < kSmallFiles; base += kRound) {
    auto t = Clock::now();
    for (int i = base; i < base + kRound; ++i)
      fs.forget(entry_id(fs.lookup(sub, name(i)), "LOOKUP"), 1);
    k[1] += since(t);
    t = Clock::now();
    for (int i = base; i < base + kRound; ++i) {
      struct stat st {};
      if (::fstatat(hdir, name(i).c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) die("host stat");
    }
    h[1] += since(t);
  }
  for (int base = 0; base < kSmallFiles; base += kRound) {
    auto t = Clock::now();
    for (int i = base; i < base + kRound; ++i)
      if (fs.unlink(sub, name(i)).error()) die("UNLINK failed");
    k[2] += since(t);
    t = Clock::now();
    for (int i = base; i < base + kRound; ++i)
      if (::unlinkat(hdir, name(i).c_str(), 0) < 0) die("host unlink");
    h[2] += since(t);
  }
  ::close(hdir);
  print({"small file create+close", "op/s", kSmallFiles / k[0], kSmallFiles / h[0]});
  print({"small file stat (lookup)", "op/s", kSmallFiles / k[1], kSmallFiles / h[1]});
  print({"small file unlink", "op/s", kSmallFiles / k[2], kSmallFiles / h[2]});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    std::fprintf(stderr, "usage: fs_bench [DIR]\n");
    return 2;
  }
  const char* t = std::getenv("TMPDIR");
  std::string dir = argc == 2 ? argv[1] : (t && *t ? t : "/tmp");
  dir += "/kiln-fs-bench-XXXXXX";  // a fresh directory, removed at the end
  if (!::mkdtemp(dir.data())) die(dir + ": " + std::strerror(errno));
  {
    const int fd = ::open((dir + "/cached").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die("create the test file");
    std::vector<uint8_t> chunk(kMiB);
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<uint8_t>(i * 7 + 3);
    for (uint64_t off = 0; off < kFileBytes; off += kMiB)
      if (::pwrite(fd, chunk.data(), kMiB, static_cast<off_t>(off)) != static_cast<ssize_t>(kMiB))
        die("write the test file");
    for (uint64_t off = 0; off < kFileBytes; off += kMiB)  // warm: both sides read the cache
      if (::pread(fd, chunk.data(), kMiB, static_cast<off_t>(off)) != static_cast<ssize_t>(kMiB))
        die("warm the test file");
    ::close(fd);
  }

  kiln::virtio::FsOptions options;
  options.tag = "bench";
  options.path = dir;
  FuseDriver fs(options, 128 * kMiB);
  if (fs.init().error()) die("INIT failed");

  std::printf("fs_bench: %s, no guest/KVM, Kiln's virtio-fs beside the host directory\n",
              dir.c_str());
  std::printf("%-30s %17s %17s %9s\n", "workload", "Kiln", "host", "Kiln/host");
  print(sequential(fs, dir, false));
  print(sequential(fs, dir, true));
  small_files(fs, dir);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
