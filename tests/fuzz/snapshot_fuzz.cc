// libFuzzer target for snapshot state files (base/snapshot/state_file.cc), which `--restore`
// reads from wherever a user points it. The input is the body after the magic; the harness
// adds the magic and a correct CRC so the fuzzer reaches the version, host and section
// parsing (a wrong CRC is refused first, and libFuzzer cannot forge one). Every input is
// either refused with kiln::Error or decoded into sections that hold the format's bounds.
// Each section is also read as what a restore reads it as: a vCPU's state, the VM's, a
// virtqueue's (arch/x86_64/vcpu_state.cc, vm_state.cc, devices/virtio/queue.cc), which must
// refuse or give values inside their bounds.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "arch/x86_64/vcpu_state.h"
#include "arch/x86_64/vm_state.h"
#include "base/error.h"
#include "base/guest_memory.h"
#include "base/snapshot/bytes.h"
#include "base/snapshot/state_file.h"
#include "devices/virtio/queue.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes = {'K', 'I', 'L', 'N', 'S', 'N', 'A', 'P'};
  bytes.insert(bytes.end(), data, data + size);
  uint32_t crc = static_cast<uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), bytes.data(), bytes.size()));
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  const kiln::snapshot::HostIdentity host{"FuzzCPU", 0x1234};
  try {
    auto f = kiln::snapshot::StateFile::decode(bytes, "fuzz", host);
    if (f.names().size() > kiln::snapshot::kMaxSections) abort();
    for (const auto& n : f.names()) {
      if (n.empty() || n.size() > kiln::snapshot::kMaxSectionName) abort();
      const auto& s = f.section(n);
      kiln::snapshot::ByteReader r(s.data(), s.size(), n);
      try {
        while (r.left()) r.blob(64);
      } catch (const kiln::Error&) {
      }
      try {
        const auto vcpu = kiln::x86::decode_vcpu_state(s, n);
        if (vcpu.msrs.size() > kiln::x86::VcpuState::kMaxMsrs ||
            vcpu.xsave.size() > kiln::x86::VcpuState::kMaxXsave)
          abort();
      } catch (const kiln::Error&) {
      }
      try {
        kiln::x86::decode_vm_state(s, n);
      } catch (const kiln::Error&) {
      }
      try {
        static const kiln::GuestMemory mem({{0, 1 << 20}});
        kiln::snapshot::ByteReader q(s.data(), s.size(), n);
        const auto queue = kiln::virtio::Queue::restore(q, 256, mem, n);
        if (queue.size == 0 || queue.size > 256 || (queue.ready && !queue.validate(mem).empty()))
          abort();
      } catch (const kiln::Error&) {
      }
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
