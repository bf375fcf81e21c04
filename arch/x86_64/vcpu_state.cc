#include "arch/x86_64/vcpu_state.h"

#include <algorithm>

#include "base/error.h"
#include "base/snapshot/bytes.h"

namespace kiln::x86 {

namespace {

constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrTscDeadline = 0x6e0;

bool tsc_msr(uint32_t index) {
  return index == kMsrTsc || index == kMsrTscDeadline;
}
constexpr uint16_t kVersion = 1;

}  // namespace

std::vector<uint32_t> saveable_msrs(const KvmSystem& kvm, const VcpuFd& vcpu) {
  std::vector<uint32_t> listed = kvm.msr_index_list();
  // The deadline last: stable_partition keeps the others in KVM's order.
  std::stable_partition(listed.begin(), listed.end(),
                        [](uint32_t index) { return index != kMsrTscDeadline; });
  std::vector<uint32_t> readable;
  readable.reserve(listed.size());
  size_t next = 0;
  while (next < listed.size()) {
    // KVM reads in order and stops at the first MSR it cannot read: skip that one, go on.
    std::vector<uint32_t> rest(listed.begin() + static_cast<std::ptrdiff_t>(next), listed.end());
    const size_t read = vcpu.get_msrs(rest).size();
    readable.insert(readable.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(read));
    next += read + 1;
  }
  return readable;
}

VcpuState save_vcpu_state(const KvmSystem& kvm, const VcpuFd& vcpu,
                          const std::vector<uint32_t>& msrs) {
  VcpuState s;
  s.mp_state = vcpu.get_mp_state();
  s.regs = vcpu.get_regs();
  s.sregs = vcpu.get_sregs();
  s.xsave = vcpu.get_xsave(kvm.xsave_size());
  s.xcrs = vcpu.get_xcrs();
  s.debugregs = vcpu.get_debugregs();
  s.lapic = vcpu.get_lapic();
  s.tsc_khz = vcpu.get_tsc_khz();
  s.msrs = vcpu.get_msrs(msrs);
  if (s.msrs.size() != msrs.size())
    throw Error("KVM_GET_MSRS: KVM could not read MSR " + std::to_string(msrs[s.msrs.size()]) +
                " it listed as saveable");
  s.events = vcpu.get_vcpu_events();
  return s;
}

void restore_vcpu_state(VcpuFd& vcpu, const VcpuState& s) {
  // A host whose TSC runs at another rate scales the guest's (KVM_CAP_TSC_CONTROL).
  if (s.tsc_khz != 0 && vcpu.get_tsc_khz() != s.tsc_khz) vcpu.set_tsc_khz(s.tsc_khz);
  vcpu.set_mp_state(s.mp_state);
  vcpu.set_regs(s.regs);
  vcpu.set_sregs(s.sregs);
  vcpu.set_xsave(s.xsave);
  vcpu.set_xcrs(s.xcrs);
  vcpu.set_debugregs(s.debugregs);
  vcpu.set_lapic(s.lapic);
  std::vector<kvm_msr_entry> msrs;
  for (const kvm_msr_entry& m : s.msrs)
    if (!tsc_msr(m.index)) msrs.push_back(m);
  vcpu.set_msrs(msrs);
  vcpu.set_vcpu_events(s.events);
}

void restore_vcpu_tsc(VcpuFd& vcpu, const VcpuState& s) {
  std::vector<kvm_msr_entry> msrs;
  for (const kvm_msr_entry& m : s.msrs)
    if (tsc_msr(m.index)) msrs.push_back(m);
  // saveable_msrs put the deadline after the TSC.
  vcpu.set_msrs(msrs);
}

std::vector<uint8_t> encode_vcpu_state(const VcpuState& s) {
  snapshot::ByteWriter w;
  w.u16(kVersion);
  w.pod(s.mp_state);
  w.pod(s.regs);
  w.pod(s.sregs);
  w.blob(std::string_view(reinterpret_cast<const char*>(s.xsave.data()), s.xsave.size()));
  w.pod(s.xcrs);
  w.pod(s.debugregs);
  w.pod(s.lapic);
  w.u32(static_cast<uint32_t>(s.msrs.size()));
  for (const kvm_msr_entry& msr : s.msrs) {
    w.u32(msr.index);
    w.u64(msr.data);
  }
  w.pod(s.events);
  w.u32(s.tsc_khz);
  return w.take();
}

VcpuState decode_vcpu_state(std::span<const uint8_t> bytes, const std::string& what) {
  snapshot::ByteReader r(bytes.data(), bytes.size(), what);
  r.expect_version(kVersion);
  VcpuState s;
  s.mp_state = r.pod<kvm_mp_state>("the MP state");
  // The x86 states (RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED, SIPI_RECEIVED).
  if (s.mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
    throw Error(what + ": MP state " + std::to_string(s.mp_state.mp_state) +
                " is not one an x86 vCPU has");
  s.regs = r.pod<kvm_regs>("the registers");
  s.sregs = r.pod<kvm_sregs>("the special registers");
  const std::string xsave = r.blob(VcpuState::kMaxXsave);
  if (xsave.size() < sizeof(kvm_xsave) || xsave.size() % 4 != 0)
    throw Error(what + ": an XSAVE area of " + std::to_string(xsave.size()) + " bytes");
  s.xsave.assign(xsave.begin(), xsave.end());
  s.xcrs = r.pod<kvm_xcrs>("the XCRs");
  if (s.xcrs.nr_xcrs > KVM_MAX_XCRS)
    throw Error(what + ": " + std::to_string(s.xcrs.nr_xcrs) + " XCRs (at most " +
                std::to_string(KVM_MAX_XCRS) + ")");
  s.debugregs = r.pod<kvm_debugregs>("the debug registers");
  s.lapic = r.pod<kvm_lapic_state>("the LAPIC");
  const uint32_t n = r.u32();
  if (n > VcpuState::kMaxMsrs)
    throw Error(what + ": " + std::to_string(n) + " MSRs (at most " +
                std::to_string(VcpuState::kMaxMsrs) + ")");
  s.msrs.resize(n);
  for (kvm_msr_entry& msr : s.msrs) {
    msr.index = r.u32();
    msr.data = r.u64();
  }
  s.events = r.pod<kvm_vcpu_events>("the pending events");
  s.tsc_khz = r.u32();
  r.finish();
  return s;
}

}  // namespace kiln::x86
