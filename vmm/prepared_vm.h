// The part of a VM made before InstanceStart, while the API configures it: /dev/kvm opened and
// checked, the KVM VM (on x86 with its TSS and identity-map pages), the in-kernel irqchip and
// PIT, vCPU 0 (every VM has one) set up for the configured vCPU count, guest RAM in its KVM
// slots and, once boot-source names them, the kernel's segments and the initrd read into it.
// Nothing of it shows outside the process: devices (which open disks, TAPs and sockets), the
// command line (it carries the devices' parameters), boot_params and the ACPI tables stay at
// InstanceStart. The controller makes a PreparedVm in the background and prepares it again
// when machine-config or boot-source change it (the Vmm takes it; what no longer matches the
// configuration it makes again itself).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/guest_memory.h"
#include "base/huge_pages.h"
#include "base/kvm.h"
#include "boot/linux_loader.h"
#include "vmm/vm_config.h"

namespace kiln {

// What a PreparedVm is prepared for: the configuration fields it depends on.
struct PreparedShape {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 0;  // 0: no RAM (a snapshot load maps its own)
  HugePages huge_pages = HugePages::kNone;
  bool track_dirty_pages = false;
  std::string kernel_path, initrd_path;
  static PreparedShape of(const VmConfig& config);
  bool operator==(const PreparedShape&) const = default;
};

class PreparedVm {
 public:
  // Throws kiln::Error when /dev/kvm cannot be used (the start then builds its own and says why).
  PreparedVm();
  ~PreparedVm();
  PreparedVm(const PreparedVm&) = delete;
  PreparedVm& operator=(const PreparedVm&) = delete;

  // Sets vCPU 0 up for `shape.vcpus` (again, if it was for another count), maps guest RAM in
  // its slots (fresh RAM when the size or the kernel changed) and reads the kernel and initrd
  // into it. hugetlbfs RAM is not mapped ahead (it would hold host huge pages the
  // configuration may not keep). A kernel that cannot be read is left to the start to report.
  void prepare(const PreparedShape& shape);
  // The prepared RAM if it is what `shape` asks, its slots registered; else nothing, and its
  // slots are removed (the Vmm maps and registers its own).
  std::optional<GuestMemory> take_memory(const PreparedShape& shape);
  bool memory_slots_registered() const { return memory_taken_; }
  // The taken RAM holds these files' kernel and initrd, unchanged since they were read.
  bool image_preloaded(const std::string& kernel_path, const std::string& initrd_path) const;
  // vCPU 0 is set up (setup_vcpu_common) for `vcpus`.
  bool vcpu0_ready_for(uint32_t vcpus) const { return vcpu0 && vcpu0_count_ == vcpus; }

  KvmSystem kvm;
  VmFd vm;
  std::unique_ptr<VcpuFd> vcpu0;  // taken by the Vmm

 private:
  void map_memory(const PreparedShape& shape);
  void remove_memory();

  std::optional<GuestMemory> memory_;
  PreparedShape memory_shape_;  // its memory fields say what memory_ is
  bool memory_taken_ = false;
  std::optional<boot::PreloadedImage> image_;
  uint32_t vcpu0_count_ = 0;
};

}  // namespace kiln
