#include "arch/x86_64/vm_state.h"

#include "base/error.h"
#include "base/snapshot/bytes.h"

namespace kiln::x86 {

namespace {

constexpr uint16_t kVersion = 1;

void check_chip(const kvm_irqchip& chip, uint32_t want, const std::string& what, const char* name) {
  if (chip.chip_id != want)
    throw Error(what + ": " + name + " has chip id " + std::to_string(chip.chip_id) + ", not " +
                std::to_string(want));
}

}  // namespace

VmState save_vm_state(const VmFd& vm) {
  VmState s;
  s.pic_master = vm.get_irqchip(KVM_IRQCHIP_PIC_MASTER);
  s.pic_slave = vm.get_irqchip(KVM_IRQCHIP_PIC_SLAVE);
  s.ioapic = vm.get_irqchip(KVM_IRQCHIP_IOAPIC);
  s.pit = vm.get_pit2();
  s.clock = vm.get_clock();
  return s;
}

void restore_vm_state(VmFd& vm, const VmState& s, bool clock_realtime) {
  vm.set_pit2(s.pit);
  vm.set_irqchip(s.pic_master);
  vm.set_irqchip(s.pic_slave);
  vm.set_irqchip(s.ioapic);
  kvm_clock_data clock{};
  clock.clock = s.clock.clock;
  if (clock_realtime) {
    if (!(s.clock.flags & KVM_CLOCK_REALTIME))
      throw Error(
          "clock_realtime: the snapshot's host KVM did not record the wall clock with "
          "kvmclock; restore without clock_realtime");
    clock.flags = KVM_CLOCK_REALTIME;
    clock.realtime = s.clock.realtime;
  }
  vm.set_clock(clock);
}

std::vector<uint8_t> encode_vm_state(const VmState& s) {
  snapshot::ByteWriter w;
  w.u16(kVersion);
  w.pod(s.pic_master);
  w.pod(s.pic_slave);
  w.pod(s.ioapic);
  w.pod(s.pit);
  w.pod(s.clock);
  return w.take();
}

VmState decode_vm_state(std::span<const uint8_t> bytes, const std::string& what) {
  snapshot::ByteReader r(bytes.data(), bytes.size(), what);
  r.expect_version(kVersion);
  VmState s;
  s.pic_master = r.pod<kvm_irqchip>("the master PIC");
  s.pic_slave = r.pod<kvm_irqchip>("the slave PIC");
  s.ioapic = r.pod<kvm_irqchip>("the IOAPIC");
  s.pit = r.pod<kvm_pit_state2>("the PIT");
  s.clock = r.pod<kvm_clock_data>("kvmclock");
  r.finish();
  check_chip(s.pic_master, KVM_IRQCHIP_PIC_MASTER, what, "the master PIC");
  check_chip(s.pic_slave, KVM_IRQCHIP_PIC_SLAVE, what, "the slave PIC");
  check_chip(s.ioapic, KVM_IRQCHIP_IOAPIC, what, "the IOAPIC");
  return s;
}

}  // namespace kiln::x86
