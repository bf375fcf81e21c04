// The x86-64 VM's own state for snapshots: the in-kernel irqchip (both 8259 PICs and the
// IOAPIC), the PIT and kvmclock. Saved while every vCPU is paused; restored into a fresh VM
// that has its irqchip and PIT, before any vCPU runs.
#pragma once

#include "base/kvm_uapi.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/kvm.h"

namespace kiln::x86 {

struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  kvm_clock_data clock{};
};

VmState save_vm_state(const VmFd& vm);
// The PIT, the PICs and the IOAPIC, then kvmclock (the vCPUs' TSCs follow it at once:
// restore_vcpu_tsc). kvmclock continues from the value it
// had (the guest does not see the time the snapshot spent on disk) or, with
// `clock_realtime`, is advanced by the wall-clock time since (KVM_CLOCK_REALTIME; kiln::Error
// if the snapshot's host did not record it).
void restore_vm_state(VmFd& vm, const VmState& state, bool clock_realtime = false);

std::vector<uint8_t> encode_vm_state(const VmState& state);
// kiln::Error naming `what` and the field for bytes that are not such a state.
VmState decode_vm_state(std::span<const uint8_t> bytes, const std::string& what);

}  // namespace kiln::x86
