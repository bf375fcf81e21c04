#include "base/snapshot/uffd.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/error.h"
#include "base/unix_socket.h"

namespace kiln::snapshot {

std::string uffd_regions_json(const GuestMemory& mem) {
  std::string json = "[";
  uint64_t offset = 0;
  for (const GuestRegion& r : mem.regions()) {
    if (json.size() > 1) json += ",";
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    json += "{\"base_host_virt_addr\":" +
            std::to_string(reinterpret_cast<uintptr_t>(r.mapping.data())) +
            ",\"size\":" + std::to_string(r.size()) + ",\"offset\":" + std::to_string(offset) +
            ",\"page_size\":" + std::to_string(page) +
            ",\"page_size_kib\":" + std::to_string(page) + "}";
    offset += r.size();
  }
  return json + "]";
}

UniqueFd hand_memory_to_uffd_handler(const GuestMemory& mem, const std::string& socket_path) {
  const std::string what = "mem_backend Uffd " + socket_path;
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd) {
    if (errno == EPERM)
      throw Error(what +
                  ": userfaultfd is not permitted here (KVM's faults come from the kernel: "
                  "run with CAP_SYS_PTRACE, or set vm.unprivileged_userfaultfd=1)");
    throw_errno(what + ": userfaultfd");
  }
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) < 0) throw_errno(what + ": UFFDIO_API");
  for (const GuestRegion& r : mem.regions()) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uintptr_t>(r.mapping.data());
    reg.range.len = r.size();
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) throw_errno(what + ": UFFDIO_REGISTER");
  }
  const auto address = unix_address(socket_path);
  if (!address) throw Error(what + ": the path is empty or too long for a Unix socket");
  UniqueFd sock = connect_unix(*address);
  if (!sock) throw_errno(what + ": connect (is the page-fault handler listening?)");
  if (!send_with_fd(sock.get(), uffd_regions_json(mem), uffd.get()))
    throw_errno(what + ": send the regions");
  return uffd;
}

}  // namespace kiln::snapshot
