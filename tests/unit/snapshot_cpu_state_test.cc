// arch/x86_64/vcpu_state.h and vm_state.h: the encodings round-trip, and state bytes that are
// not such a state (each truncation, a trailing byte, another version, values KVM does not
// define, counts past the bounds) are refused naming the section. With a usable /dev/kvm, a
// vCPU's and a VM's state saved from KVM and put into fresh ones reads back the same.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/vcpu_state.h"
#include "arch/x86_64/vm_state.h"
#include "base/error.h"
#include "base/snapshot/bytes.h"

namespace kiln::x86 {
namespace {

VcpuState sample_vcpu() {
  VcpuState s;
  s.mp_state.mp_state = KVM_MP_STATE_HALTED;
  s.regs.rip = 0x100200;
  s.regs.rsp = 0x8000;
  s.sregs.cr0 = 0x80050033;
  s.sregs.efer = 0xd01;
  s.xsave.assign(sizeof(kvm_xsave) + 64, 0x5a);
  s.xcrs.nr_xcrs = 1;
  s.xcrs.xcrs[0] = {0, 0, 7};
  s.debugregs.dr7 = 0x400;
  s.lapic.regs[0x20] = 1;
  s.msrs = {{0x10, 0, 12345}, {0xc0000080, 0, 0xd01}, {0x6e0, 0, 99}};
  s.events.nmi.pending = 1;
  s.tsc_khz = 2'000'000;
  return s;
}

std::string refusal(const std::vector<uint8_t>& bytes) {
  try {
    decode_vcpu_state(bytes, "vcpu/0");
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(VcpuStateEncoding, RoundTrips) {
  const VcpuState s = sample_vcpu();
  const VcpuState back = decode_vcpu_state(encode_vcpu_state(s), "vcpu/0");
  EXPECT_EQ(back.mp_state.mp_state, s.mp_state.mp_state);
  EXPECT_EQ(back.regs.rip, s.regs.rip);
  EXPECT_EQ(back.sregs.efer, s.sregs.efer);
  EXPECT_EQ(back.xsave, s.xsave);
  EXPECT_EQ(back.xcrs.xcrs[0].value, 7u);
  EXPECT_EQ(back.debugregs.dr7, 0x400u);
  EXPECT_EQ(back.lapic.regs[0x20], 1);
  ASSERT_EQ(back.msrs.size(), 3u);
  EXPECT_EQ(back.msrs[2].index, 0x6e0u);
  EXPECT_EQ(back.msrs[2].data, 99u);
  EXPECT_EQ(back.events.nmi.pending, 1);
  EXPECT_EQ(back.tsc_khz, s.tsc_khz);
}

TEST(VcpuStateEncoding, BadStatesAreRefusedNamingTheSection) {
  const std::vector<uint8_t> good = encode_vcpu_state(sample_vcpu());
  for (size_t n = 0; n < good.size(); n += 7)
    EXPECT_NE(refusal({good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)}), "accepted")
        << n;
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_NE(refusal(longer).find("vcpu/0"), std::string::npos);
  std::vector<uint8_t> version = good;
  version[0] = 9;
  EXPECT_NE(refusal(version).find("version 9"), std::string::npos);

  VcpuState s = sample_vcpu();
  s.mp_state.mp_state = 7;  // an s390 state
  EXPECT_NE(refusal(encode_vcpu_state(s)).find("MP state 7"), std::string::npos);
  s = sample_vcpu();
  s.xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
  EXPECT_NE(refusal(encode_vcpu_state(s)).find("XCRs"), std::string::npos);
  s = sample_vcpu();
  s.xsave.resize(100);
  EXPECT_NE(refusal(encode_vcpu_state(s)).find("XSAVE"), std::string::npos);
  s = sample_vcpu();
  s.msrs.resize(VcpuState::kMaxMsrs + 1);
  EXPECT_NE(refusal(encode_vcpu_state(s)).find("MSRs"), std::string::npos);
  // A structure of another size (another kernel's ABI).
  snapshot::ByteWriter w;
  w.u16(1);
  w.blob("abc");
  EXPECT_NE(refusal(w.take()).find("the MP state is 3 bytes, not 4"), std::string::npos);
}

TEST(VmStateEncoding, RoundTripsAndRefusesOtherChips) {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.pit.channels[0].count = 1193;
  s.clock.clock = 123456789;
  const std::vector<uint8_t> good = encode_vm_state(s);
  const VmState back = decode_vm_state(good, "vm");
  EXPECT_EQ(back.pit.channels[0].count, 1193u);
  EXPECT_EQ(back.clock.clock, 123456789u);
  for (size_t n = 0; n < good.size(); n += 13)
    EXPECT_THROW(decode_vm_state({good.data(), n}, "vm"), Error) << n;
  s.ioapic.chip_id = KVM_IRQCHIP_PIC_MASTER;
  try {
    decode_vm_state(encode_vm_state(s), "vm");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the IOAPIC has chip id 0"), std::string::npos);
  }
}

// KVM itself: state saved from one vCPU and restored into a fresh one reads back the same.
TEST(VcpuStateKvm, SavedStateRestoresIntoAFreshVcpu) {
  UniqueFd probe(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!probe) GTEST_SKIP() << "needs /dev/kvm";
  KvmSystem kvm;
  VmFd vm(kvm);
  vm.create_irqchip();
  vm.create_pit2();
  auto a = vm.create_vcpu(0, kvm.vcpu_mmap_size());
  auto b = vm.create_vcpu(1, kvm.vcpu_mmap_size());
  setup_vcpu_common(kvm, *a, 0, 2);
  setup_vcpu_common(kvm, *b, 1, 2);
  setup_boot_vcpu_registers(*a, 0x100200, 0x7000);
  kvm_regs regs = a->get_regs();
  regs.rbx = 0xfeedface;
  a->set_regs(regs);
  constexpr uint32_t kLstar = 0xc0000082, kSysenterEip = 0x176;
  a->set_msrs({{kLstar, 0, 0xffffffff81000000}, {kSysenterEip, 0, 0x81200000}});

  const std::vector<uint32_t> msrs = saveable_msrs(kvm, *a);
  EXPECT_GT(msrs.size(), 10u);
  const VcpuState saved =
      decode_vcpu_state(encode_vcpu_state(save_vcpu_state(kvm, *a, msrs)), "vcpu/0");
  restore_vcpu_state(*b, saved);
  restore_vcpu_tsc(*b, saved);
  const VcpuState again = save_vcpu_state(kvm, *b, msrs);
  EXPECT_EQ(again.regs.rip, 0x100200u);
  EXPECT_EQ(again.regs.rbx, 0xfeedfaceu);
  EXPECT_EQ(again.sregs.cr0, saved.sregs.cr0);
  EXPECT_EQ(again.sregs.efer, saved.sregs.efer);
  EXPECT_EQ(again.sregs.cs.selector, saved.sregs.cs.selector);
  EXPECT_EQ(again.mp_state.mp_state, saved.mp_state.mp_state);
  ASSERT_EQ(again.msrs.size(), saved.msrs.size());
  // MSRs that hold values (counters such as the TSC and Hyper-V's reference time move on).
  auto msr = [](const VcpuState& s, uint32_t index) -> uint64_t {
    for (const kvm_msr_entry& e : s.msrs)
      if (e.index == index) return e.data;
    return 0;
  };
  EXPECT_EQ(msr(again, kLstar), 0xffffffff81000000u);
  EXPECT_EQ(msr(again, kSysenterEip), 0x81200000u);
  for (uint32_t index : {0xc0000080u /* EFER */, 0x277u /* PAT */, 0x1a0u /* MISC_ENABLE */})
    EXPECT_EQ(msr(again, index), msr(saved, index)) << std::hex << index;

  const VmState vm_state = decode_vm_state(encode_vm_state(save_vm_state(vm)), "vm");
  VmFd other(kvm);
  other.create_irqchip();
  other.create_pit2();
  restore_vm_state(other, vm_state);
  const VmState back = save_vm_state(other);
  EXPECT_EQ(std::memcmp(&back.pic_master, &vm_state.pic_master, sizeof(kvm_irqchip)), 0);
  EXPECT_EQ(std::memcmp(&back.ioapic, &vm_state.ioapic, sizeof(kvm_irqchip)), 0);
  EXPECT_GE(back.clock.clock, vm_state.clock.clock);
}

}  // namespace
}  // namespace kiln::x86
