#include "vmm/prepared_vm.h"

namespace kiln {

namespace {
constexpr uint64_t kTssAddr = 0xfffbd000;          // three pages KVM needs on Intel VMX
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;  // one page, just below
}  // namespace

PreparedVm::PreparedVm() : kvm(), vm(kvm) {
  vm.set_tss_addr(kTssAddr);
  vm.set_identity_map_addr(kIdentityMapAddr);
  vm.create_irqchip();
  vm.create_pit2();
  vcpu0 = vm.create_vcpu(0, kvm.vcpu_mmap_size());
}

}  // namespace kiln
