// Firecracker's Uffd memory backend for snapshot restores: guest RAM is anonymous memory
// registered with a userfaultfd, and a page-fault handler process (its own, listening on a
// Unix socket) serves every page the guest, KVM or Kiln first touches. Kiln connects to the
// socket and sends, in one message, the regions as JSON with the userfaultfd attached
// (SCM_RIGHTS): [{"base_host_virt_addr", "size", "offset", "page_size", "page_size_kib"}],
// offsets into the memory file's layout (the regions one after another); page_size_kib carries
// bytes too, as Firecracker's deprecated field does.
#pragma once

#include <string>

#include "base/guest_memory.h"
#include "base/unique_fd.h"

namespace kiln::snapshot {

// Registers every region of `mem` (anonymous, untouched) with a new userfaultfd for missing
// pages and hands it to the handler at `socket_path`. Returns the userfaultfd (keep it open
// for the VM's life). Throws kiln::Error naming the step: userfaultfd not permitted (it needs
// CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1, as KVM's faults come from the kernel), no
// handler listening.
UniqueFd hand_memory_to_uffd_handler(const GuestMemory& mem, const std::string& socket_path);

// The JSON Kiln sends (for tests and handlers).
std::string uffd_regions_json(const GuestMemory& mem);

}  // namespace kiln::snapshot
