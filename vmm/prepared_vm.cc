#include "vmm/prepared_vm.h"

#include <spdlog/spdlog.h>

#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/layout.h"

namespace kiln {

namespace {
constexpr uint64_t kTssAddr = 0xfffbd000;          // three pages KVM needs on Intel VMX
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;  // one page, just below

bool same_memory(const PreparedShape& a, const PreparedShape& b) {
  return a.memory_mib == b.memory_mib && a.huge_pages == b.huge_pages &&
         a.track_dirty_pages == b.track_dirty_pages;
}
}  // namespace

PreparedShape PreparedShape::of(const VmConfig& config) {
  return {config.vcpus,       config.memory_mib, config.huge_pages, config.track_dirty_pages,
          config.kernel_path, config.initrd_path};
}

PreparedVm::PreparedVm() : kvm(), vm(kvm) {
  vm.set_tss_addr(kTssAddr);
  vm.set_identity_map_addr(kIdentityMapAddr);
  vm.create_irqchip();
  vm.create_pit2();
  vcpu0 = vm.create_vcpu(0, kvm.vcpu_mmap_size());
}

PreparedVm::~PreparedVm() = default;

void PreparedVm::prepare(const PreparedShape& shape) {
  if (vcpu0 && vcpu0_count_ != shape.vcpus && shape.vcpus > 0 &&
      shape.vcpus <= static_cast<uint32_t>(kvm.max_vcpus())) {
    x86::setup_vcpu_common(kvm, *vcpu0, 0, shape.vcpus);  // CPUID may be set again before a run
    vcpu0_count_ = shape.vcpus;
  }
  if (memory_taken_) return;
  const bool image_ok = image_ && image_->current(shape.kernel_path, shape.initrd_path);
  if (memory_ && same_memory(memory_shape_, shape) &&
      (image_ok || (!image_ && shape.kernel_path.empty())))
    return;
  // Fresh RAM: a guest starts on zeroed memory, not on another kernel's bytes.
  remove_memory();
  if (shape.huge_pages == HugePages::k2M || shape.memory_mib == 0) return;
  map_memory(shape);
  if (shape.kernel_path.empty()) return;
  try {
    image_ = boot::preload_linux_image(*memory_, shape.kernel_path, shape.initrd_path);
  } catch (const std::exception& e) {
    spdlog::debug("reading the kernel ahead of InstanceStart: {}", e.what());
    remove_memory();  // partly written: the start maps and loads its own (and reports this)
    map_memory(shape);
  }
}

void PreparedVm::map_memory(const PreparedShape& shape) {
  memory_.emplace(x86::ram_ranges(shape.memory_mib << 20), shape.huge_pages);
  uint32_t slot = 0;
  for (const GuestRegion& region : memory_->regions())
    vm.set_user_memory_region(slot++, region.base, region.size(), region.mapping.data(),
                              shape.track_dirty_pages);
  memory_shape_ = shape;
}

std::optional<GuestMemory> PreparedVm::take_memory(const PreparedShape& shape) {
  if (!memory_ || memory_taken_ || !same_memory(memory_shape_, shape)) {
    remove_memory();
    return std::nullopt;
  }
  memory_taken_ = true;
  std::optional<GuestMemory> out = std::move(memory_);
  memory_.reset();
  return out;
}

bool PreparedVm::image_preloaded(const std::string& kernel_path,
                                 const std::string& initrd_path) const {
  return memory_taken_ && image_ && image_->current(kernel_path, initrd_path);
}

void PreparedVm::remove_memory() {
  image_.reset();
  if (!memory_) return;
  // A slot of size 0 is deleted; the RAM goes after its slots.
  uint32_t slot = 0;
  for (const GuestRegion& region : memory_->regions())
    vm.set_user_memory_region(slot++, region.base, 0, region.mapping.data());
  memory_.reset();
}

}  // namespace kiln
