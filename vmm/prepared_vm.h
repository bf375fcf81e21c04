// The part of a VM that no configuration decides: /dev/kvm opened and checked, the KVM VM made
// (on x86 with its TSS and identity-map pages), the in-kernel irqchip and PIT, and vCPU 0
// (every VM has one; its CPUID, registers and the others come with the configuration).
// KVM_CREATE_VM is among the slowest steps of a start; the controller makes one in the background
// while the API configures the VM, so InstanceStart does not wait for it (Vmm takes it).
#pragma once

#include <memory>

#include "base/kvm.h"

namespace kiln {

struct PreparedVm {
  // Throws kiln::Error when /dev/kvm cannot be used (the start then builds its own and says why).
  PreparedVm();
  KvmSystem kvm;
  VmFd vm;
  std::unique_ptr<VcpuFd> vcpu0;  // taken by the Vmm
};

}  // namespace kiln
