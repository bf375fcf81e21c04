// libFuzzer target for virtio-fs's FUSE server: arbitrary request bytes, split into arbitrary
// readable and writable iovecs, through FuseServer::handle over a temporary share (files, a
// directory, a FIFO, a symlink pointing at /etc/passwd). After a valid INIT each input is a
// sequence of requests:
//   u8 in_pieces, u8 out_pieces, u16 out_len, u16 in_len, in_len bytes (header + arguments)
// Checks: no crash or sanitizer report, the reply never claims more than the writable bytes,
// an answered reply's header says so, nothing outside the share changes (a canary file beside
// it keeps its contents and mode).
//
// Host resources: the share lives in a fresh temporary directory; files are capped by
// RLIMIT_FSIZE (64 MiB, SIGXFSZ ignored so writes past it fail with EFBIG) and FALLOCATE
// lengths are clamped to 16 MiB by the harness, so a run cannot fill the disk.
#include <fcntl.h>
#include <linux/fuse.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/fs/fuse_server.h"

namespace {

namespace stdfs = std::filesystem;

struct Share {
  std::string root;  // holds share/ and canary
  std::string share;
  std::string canary;  // outside the share: must never change
  int inputs = 0;

  Share() {
    const char* t = std::getenv("TMPDIR");
    root = std::string(t && *t ? t : "/tmp") + "/kiln-fuse-fuzz-XXXXXX";
    if (!::mkdtemp(root.data())) std::abort();
    share = root + "/share";
    canary = root + "/canary";
    std::ofstream(canary) << "canary";
    ::chmod(canary.c_str(), 0600);
    populate();
    spdlog::set_level(spdlog::level::off);  // a new server (and log limiter) per input
    rlimit fsize{64 << 20, 64 << 20};
    ::setrlimit(RLIMIT_FSIZE, &fsize);
    ::signal(SIGXFSZ, SIG_IGN);
  }
  ~Share() {
    std::error_code ec;
    stdfs::remove_all(root, ec);
  }
  void populate() {
    std::error_code ec;
    stdfs::remove_all(share, ec);
    stdfs::create_directories(share + "/dir/sub");
    std::ofstream(share + "/file") << "hello, fuzzer";
    std::ofstream(share + "/dir/inner") << "inner";
    ::mkfifo((share + "/fifo").c_str(), 0644);
    ::symlink("/etc/passwd", (share + "/passwd").c_str());
    ::symlink("../canary", (share + "/up").c_str());
    ::symlink("dir", (share + "/dirlink").c_str());
  }
  void check_canary() const {
    struct stat st {};
    if (::lstat(canary.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0600 ||
        st.st_size != 6)
      std::abort();
  }
};

Share& share() {
  static Share s;
  return s;
}

uint32_t call(kiln::virtio::FuseServer& server, std::vector<uint8_t>& in, size_t in_pieces,
              std::vector<uint8_t>& out, size_t out_pieces) {
  // Split both parts into up to 8 pieces of varying sizes.
  auto split = [](std::vector<uint8_t>& buf, size_t pieces, std::vector<iovec>& iov) {
    size_t pos = 0;
    for (size_t i = 0; i + 1 < pieces && pos < buf.size(); ++i) {
      const size_t n = std::min(buf.size() - pos, size_t{1} + (i * 13 + buf.size()) % 48);
      iov.push_back({buf.data() + pos, n});
      pos += n;
    }
    iov.push_back({buf.data() + pos, buf.size() - pos});
  };
  std::vector<iovec> in_iov, out_iov;
  split(in, in_pieces % 8 + 1, in_iov);
  split(out, out_pieces % 8 + 1, out_iov);
  const uint32_t n = server.handle(in_iov, out_iov);
  if (n > out.size()) std::abort();
  if (n >= sizeof(fuse_out_header)) {
    fuse_out_header h;
    std::memcpy(&h, out.data(), sizeof(h));
    if (h.len != n || h.error > 0 || (h.error != 0 && n != sizeof(h))) std::abort();
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Share& s = share();
  if (++s.inputs % 2000 == 0) s.populate();  // keep the share small and its names known
  kiln::virtio::FuseServerOptions options;
  options.max_inodes = 64;
  options.max_handles = 16;
  options.read_only = size > 0 && (data[0] & 0x80);
  kiln::virtio::FuseServer server(s.share, options);

  fuse_in_header h{};
  fuse_init_in init{};
  init.major = FUSE_KERNEL_VERSION;
  init.minor = FUSE_KERNEL_MINOR_VERSION;
  init.flags = ~0u;
  h.len = sizeof(h) + sizeof(init);
  h.opcode = FUSE_INIT;
  h.unique = 1;
  std::vector<uint8_t> in(h.len), out(4096);
  std::memcpy(in.data(), &h, sizeof(h));
  std::memcpy(in.data() + sizeof(h), &init, sizeof(init));
  if (call(server, in, 1, out, 1) == 0) std::abort();

  size_t pos = 0;
  while (pos + 6 <= size) {
    const uint8_t in_pieces = data[pos], out_pieces = data[pos + 1];
    uint16_t out_len, in_len;
    std::memcpy(&out_len, data + pos + 2, 2);
    std::memcpy(&in_len, data + pos + 4, 2);
    pos += 6;
    const size_t n = std::min<size_t>(in_len, size - pos);
    in.assign(data + pos, data + pos + n);
    pos += n;
    // FALLOCATE: at most 16 MiB (the harness's disk budget, not a server rule).
    if (in.size() >= sizeof(fuse_in_header) + sizeof(fuse_fallocate_in)) {
      fuse_in_header rh;
      std::memcpy(&rh, in.data(), sizeof(rh));
      if (rh.opcode == FUSE_FALLOCATE) {
        fuse_fallocate_in fa;
        std::memcpy(&fa, in.data() + sizeof(rh), sizeof(fa));
        fa.offset %= 16 << 20;
        fa.length %= 16 << 20;
        std::memcpy(in.data() + sizeof(rh), &fa, sizeof(fa));
      }
    }
    out.assign(out_len % (1 << 16) + (out_pieces & 1 ? 0 : 16), 0xa5);
    call(server, in, in_pieces, out, out_pieces);
  }
  s.check_canary();
  return 0;
}
