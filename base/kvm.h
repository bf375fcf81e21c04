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
  // KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores for a vCPU (snapshots).
  std::vector<uint32_t> msr_index_list() const;
  // Bytes of a vCPU's XSAVE state: KVM_CAP_XSAVE2's size, at least sizeof(kvm_xsave).
  size_t xsave_size() const;

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
  // The in-kernel irqchip (chip_id KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC), PIT and
  // kvmclock, for snapshots.
  kvm_irqchip get_irqchip(uint32_t chip_id) const;
  void set_irqchip(const kvm_irqchip& chip);
  kvm_pit_state2 get_pit2() const;
  void set_pit2(const kvm_pit_state2& pit);
  kvm_clock_data get_clock() const;
  void set_clock(const kvm_clock_data& clock);
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
  // Snapshot state. get_msrs returns the entries KVM read, in order; it stops at the first
  // MSR KVM cannot read (the returned vector is then shorter than `indices`).
  std::vector<kvm_msr_entry> get_msrs(const std::vector<uint32_t>& indices) const;
  // `size` from KvmSystem::xsave_size() (KVM_GET_XSAVE2 when larger than kvm_xsave).
  std::vector<uint8_t> get_xsave(size_t size) const;
  void set_xsave(const std::vector<uint8_t>& xsave);
  kvm_xcrs get_xcrs() const;
  void set_xcrs(const kvm_xcrs& xcrs);
  kvm_debugregs get_debugregs() const;
  void set_debugregs(const kvm_debugregs& regs);
  kvm_mp_state get_mp_state() const;
  void set_mp_state(const kvm_mp_state& state);
  kvm_vcpu_events get_vcpu_events() const;
  void set_vcpu_events(const kvm_vcpu_events& events);
  // KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ (TSC scaling: a restore on a host whose TSC runs at
  // another rate keeps the guest's).
  uint32_t get_tsc_khz() const;
  void set_tsc_khz(uint32_t khz);
  // KVM_KVMCLOCK_CTRL: tells a paused vCPU's guest (through kvmclock) that the host stopped it,
  // so its soft-lockup watchdog does not fire on resume. False when the guest has no kvmclock
  // (nothing to tell).
  bool kvmclock_ctrl();

 private:
  UniqueFd fd_;
  Mapping run_;
};

}  // namespace kiln
