// RAII handles for /dev/kvm, a VM and a vCPU. Each owns its fd; the vCPU also owns its
// kvm_run mapping. Every failing ioctl throws kiln::Error naming the ioctl.
#pragma once

#include "base/kvm_uapi.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/mapping.h"
#include "base/unique_fd.h"

namespace kiln {

class KvmSystem {
 public:
  // Opens /dev/kvm (or `path`) and checks the API version and required capabilities.
  explicit KvmSystem(const std::string& path = "/dev/kvm");
  int fd() const { return fd_.get(); }
  int check_extension(long cap) const;  // KVM_CHECK_EXTENSION on the system fd
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  int max_vcpus() const;
  // KVM_GET_SUPPORTED_CPUID: the host's supported leaves as a heap buffer.
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

class VcpuFd;

class VmFd {
 public:
  explicit VmFd(const KvmSystem& kvm);
  int fd() const { return fd_.get(); }
  // `log_dirty`: KVM records every page the guest writes (KVM_MEM_LOG_DIRTY_PAGES), read and
  // cleared with take_dirty_log().
  void set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                              bool log_dirty = false);
  // KVM_GET_DIRTY_LOG for a slot of `size` bytes: one bit per 4 KiB page written since the last
  // call (or since the slot was made), and KVM starts a new log.
  std::vector<uint64_t> take_dirty_log(uint32_t slot, uint64_t size);
  void create_irqchip();
  void create_pit2();
  void set_tss_addr(uint64_t addr);
  void set_identity_map_addr(uint64_t addr);
  // Connects `eventfd` to interrupt line `gsi`: a write to the eventfd raises the line.
  void register_irqfd(int eventfd, uint32_t gsi);
  void unregister_irqfd(int eventfd, uint32_t gsi);
  // Makes KVM signal `eventfd` (instead of exiting) when the guest writes `datamatch` with
  // `len` bytes to MMIO address `addr`.
  void register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch);
  std::unique_ptr<VcpuFd> create_vcpu(uint32_t index, int mmap_size);

 private:
  UniqueFd fd_;
};

class VcpuFd {
 public:
  VcpuFd(UniqueFd fd, Mapping run);
  int fd() const { return fd_.get(); }
  kvm_run* run_struct() const { return run_.as<kvm_run>(); }
  // Size of the kvm_run mapping: port-I/O data lives past the struct, inside this size.
  size_t run_size() const { return run_.size(); }
  // KVM_RUN; returns 0 or -errno (EINTR and EAGAIN are expected, not errors).
  int run();

  kvm_regs get_regs() const;
  void set_regs(const kvm_regs& regs);
  kvm_sregs get_sregs() const;
  void set_sregs(const kvm_sregs& sregs);
  void set_fpu(const kvm_fpu& fpu);
  void set_msrs(const std::vector<kvm_msr_entry>& entries);
  void set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries);
  kvm_lapic_state get_lapic() const;
  void set_lapic(const kvm_lapic_state& lapic);

 private:
  UniqueFd fd_;
  Mapping run_;
};

}  // namespace kiln
