// kiln-uffd-handler SOCKET MEMFILE: a page-fault handler for restores with mem_backend Uffd,
// as Firecracker's example handlers are: listens on SOCKET, takes one VMM's userfaultfd and
// its regions (JSON, base/snapshot/uffd.h), and answers every missing-page fault with that
// page of MEMFILE (UFFDIO_COPY). Prints "uffd-handler: listening" once it listens and, on
// SIGTERM (or when the VMM is gone), "uffd-handler: served N pages". For tests.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/unix_socket.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t stop = 0;

struct Region {
  uint64_t base, size, offset;
};

int fail(const char* what) {
  std::fprintf(stderr, "uffd-handler: %s: %s\n", what, std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET MEMFILE\n", argv[0]);
    return 2;
  }
  signal(SIGTERM, [](int) { stop = 1; });
  const int mem = open(argv[2], O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (mem < 0 || fstat(mem, &st) < 0) return fail(argv[2]);
  const size_t file_size = static_cast<size_t>(st.st_size);
  void* file = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, mem, 0);
  if (file == MAP_FAILED) return fail("mmap the memory file");

  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", argv[1]);
  unlink(argv[1]);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      listen(listener, 1) < 0)
    return fail(argv[1]);
  std::printf("uffd-handler: listening\n");
  std::fflush(stdout);
  const int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return fail("accept");

  std::vector<char> buf(64 * 1024);
  kiln::UniqueFd uffd_fd;
  const ssize_t n = kiln::recv_with_fd(conn, buf, uffd_fd);
  if (n <= 0 || !uffd_fd) return fail("receive the userfaultfd");
  const int uffd = uffd_fd.get();
  std::vector<Region> regions;
  for (const auto& r : nlohmann::json::parse(std::string(buf.data(), static_cast<size_t>(n))))
    regions.push_back({r.at("base_host_virt_addr").get<uint64_t>(), r.at("size").get<uint64_t>(),
                       r.at("offset").get<uint64_t>()});
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

  uint64_t served = 0;
  while (!stop) {
    pollfd p{uffd, POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fail("poll");
    if (ready == 0) continue;
    if (p.revents & (POLLHUP | POLLERR)) break;  // the VMM is gone
    uffd_msg m{};
    const ssize_t got = read(uffd, &m, sizeof m);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) break;
    if (m.event != UFFD_EVENT_PAGEFAULT) continue;
    const uint64_t addr = m.arg.pagefault.address & ~(page - 1);
    for (const Region& r : regions) {
      if (addr < r.base || addr >= r.base + r.size) continue;
      const uint64_t at = r.offset + (addr - r.base);
      uffdio_copy copy{};
      copy.dst = addr;
      copy.src = reinterpret_cast<uintptr_t>(file) + at;
      copy.len = page;
      if (at + page > file_size) {
        uffdio_zeropage zero{};
        zero.range.start = addr;
        zero.range.len = page;
        if (ioctl(uffd, UFFDIO_ZEROPAGE, &zero) < 0 && errno != EEXIST) return fail("ZEROPAGE");
      } else if (ioctl(uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
        return fail("UFFDIO_COPY");
      }
      ++served;
      break;
    }
  }
  std::printf("uffd-handler: served %llu pages\n", static_cast<unsigned long long>(served));
  return 0;
}
