// One x86-64 vCPU's state for snapshots: everything KVM holds for it (registers, special
// registers, XSAVE, XCRs, debug registers, every MSR KVM lists as saveable, the LAPIC, the MP
// state, pending events and the TSC rate), saved from a paused vCPU and put back into a fresh
// one that already has its CPUID (setup_vcpu_common). The bytes are checked on decode: sizes
// exactly those of the KVM structures, counts bounded, states KVM defines; KVM checks the rest.
#pragma once

#include "base/kvm_uapi.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/kvm.h"

namespace kiln::x86 {

struct VcpuState {
  static constexpr size_t kMaxMsrs = 4096;
  static constexpr size_t kMaxXsave = 1u << 20;
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::vector<uint8_t> xsave;
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  std::vector<kvm_msr_entry> msrs;
  kvm_vcpu_events events{};
  uint32_t tsc_khz = 0;
};

// The MSRs to save, from KVM_GET_MSR_INDEX_LIST, that this vCPU can read (KVM lists some
// the guest's CPUID does not have), with the TSC deadline after the TSC (KVM sets them in
// order, and a deadline is relative to the TSC).
std::vector<uint32_t> saveable_msrs(const KvmSystem& kvm, const VcpuFd& vcpu);

VcpuState save_vcpu_state(const KvmSystem& kvm, const VcpuFd& vcpu,
                          const std::vector<uint32_t>& msrs);
// Firecracker's order: MP state, registers, special registers, XSAVE, XCRs, debug registers,
// LAPIC, MSRs, events. Throws kiln::Error naming the step KVM refused. The TSC and its
// deadline are left to restore_vcpu_tsc, which the VM calls right after kvmclock: the two
// clocks go on from the same moment (a gap between them is skew the guest sees, and Linux then
// marks its TSC unstable).
void restore_vcpu_state(VcpuFd& vcpu, const VcpuState& state);
void restore_vcpu_tsc(VcpuFd& vcpu, const VcpuState& state);

std::vector<uint8_t> encode_vcpu_state(const VcpuState& state);
// kiln::Error naming `what` and the field for bytes that are not such a state.
VcpuState decode_vcpu_state(std::span<const uint8_t> bytes, const std::string& what);

}  // namespace kiln::x86
