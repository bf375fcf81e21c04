#include "base/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace kiln {

namespace {

// Flexible-array KVM structs (kvm_msrs, kvm_cpuid2) need a header plus N entries; keep them in
// a vector of the entry type with room for the header in front.
template <typename Header, typename Entry>
class FlexBuffer {
 public:
  explicit FlexBuffer(size_t n) : storage_((sizeof(Header) + n * sizeof(Entry) + 7) / 8 + 1) {}
  Header* header() { return reinterpret_cast<Header*>(storage_.data()); }
  Entry* entries() {
    return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(storage_.data()) + sizeof(Header));
  }

 private:
  std::vector<uint64_t> storage_;
};

}  // namespace

KvmSystem::KvmSystem(const std::string& path) {
  fd_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd_)
    throw Error(errno_message("cannot open " + path) +
                " (is KVM enabled, is the kvm module loaded, and may this user open it?)");
  const int version = ::ioctl(fd_.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    throw Error(path + ": KVM API version " + std::to_string(version) + ", expected " +
                std::to_string(KVM_API_VERSION));
  for (auto [cap, name] :
       {std::pair{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        std::pair{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        std::pair{KVM_CAP_IRQFD, "KVM_CAP_IRQFD"}, std::pair{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        std::pair{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        std::pair{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
    if (check_extension(cap) <= 0)
      throw Error(path + ": the host's KVM lacks " + name + ", which Kiln requires");
  }
  vcpu_mmap_size_ = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (vcpu_mmap_size_ < static_cast<int>(sizeof(kvm_run))) throw_errno("KVM_GET_VCPU_MMAP_SIZE");
}

int KvmSystem::check_extension(long cap) const {
  return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
}

int KvmSystem::max_vcpus() const {
  int n = check_extension(KVM_CAP_MAX_VCPUS);
  if (n <= 0) n = check_extension(KVM_CAP_NR_VCPUS);
  return n > 0 ? n : 4;  // KVM API doc: assume 4 when neither capability answers
}

std::vector<kvm_cpuid_entry2> KvmSystem::supported_cpuid() const {
  for (size_t n = 64; n <= 4096; n *= 2) {
    FlexBuffer<kvm_cpuid2, kvm_cpuid_entry2> buf(n);
    buf.header()->nent = static_cast<uint32_t>(n);
    if (::ioctl(fd_.get(), KVM_GET_SUPPORTED_CPUID, buf.header()) == 0)
      return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + buf.header()->nent);
    if (errno != E2BIG) throw_errno("KVM_GET_SUPPORTED_CPUID");
  }
  throw Error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

std::vector<uint32_t> KvmSystem::msr_index_list() const {
  for (size_t n = 256; n <= 16384; n *= 2) {
    FlexBuffer<kvm_msr_list, uint32_t> buf(n);
    buf.header()->nmsrs = static_cast<uint32_t>(n);
    if (::ioctl(fd_.get(), KVM_GET_MSR_INDEX_LIST, buf.header()) == 0)
      return std::vector<uint32_t>(buf.entries(), buf.entries() + buf.header()->nmsrs);
    if (errno != E2BIG) throw_errno("KVM_GET_MSR_INDEX_LIST");
  }
  throw Error("KVM_GET_MSR_INDEX_LIST: more than 16384 MSRs");
}

size_t KvmSystem::xsave_size() const {
  const int size = check_extension(KVM_CAP_XSAVE2);
  return size > static_cast<int>(sizeof(kvm_xsave)) ? static_cast<size_t>(size) : sizeof(kvm_xsave);
}

VmFd::VmFd(const KvmSystem& kvm) {
  int fd;
  do {
    fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("KVM_CREATE_VM");
  fd_.reset(fd);
}

void VmFd::set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host,
                                  bool log_dirty) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
    throw_errno("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot));
}

std::vector<uint64_t> VmFd::take_dirty_log(uint32_t slot, uint64_t size) {
  constexpr uint64_t kPage = 4096;
  std::vector<uint64_t> bitmap((size / kPage + 63) / 64);
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  if (::ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0)
    throw_errno("KVM_GET_DIRTY_LOG slot " + std::to_string(slot));
  return bitmap;
}

void VmFd::create_irqchip() {
  if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) throw_errno("KVM_CREATE_IRQCHIP");
}

void VmFd::create_pit2() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &config) < 0) throw_errno("KVM_CREATE_PIT2");
}

kvm_irqchip VmFd::get_irqchip(uint32_t chip_id) const {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  if (::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip) < 0)
    throw_errno("KVM_GET_IRQCHIP " + std::to_string(chip_id));
  return chip;
}

void VmFd::set_irqchip(const kvm_irqchip& chip) {
  if (::ioctl(fd_.get(), KVM_SET_IRQCHIP, &chip) < 0)
    throw_errno("KVM_SET_IRQCHIP " + std::to_string(chip.chip_id));
}

kvm_pit_state2 VmFd::get_pit2() const {
  kvm_pit_state2 pit{};
  if (::ioctl(fd_.get(), KVM_GET_PIT2, &pit) < 0) throw_errno("KVM_GET_PIT2");
  return pit;
}

void VmFd::set_pit2(const kvm_pit_state2& pit) {
  if (::ioctl(fd_.get(), KVM_SET_PIT2, &pit) < 0) throw_errno("KVM_SET_PIT2");
}

kvm_clock_data VmFd::get_clock() const {
  kvm_clock_data clock{};
  if (::ioctl(fd_.get(), KVM_GET_CLOCK, &clock) < 0) throw_errno("KVM_GET_CLOCK");
  return clock;
}

void VmFd::set_clock(const kvm_clock_data& clock) {
  if (::ioctl(fd_.get(), KVM_SET_CLOCK, &clock) < 0) throw_errno("KVM_SET_CLOCK");
}

void VmFd::set_tss_addr(uint64_t addr) {
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, addr) < 0) throw_errno("KVM_SET_TSS_ADDR");
}

void VmFd::set_identity_map_addr(uint64_t addr) {
  if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0)
    throw_errno("KVM_SET_IDENTITY_MAP_ADDR");
}

void VmFd::register_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  if (::ioctl(fd_.get(), KVM_IRQFD, &irqfd) < 0)
    throw_errno("KVM_IRQFD for GSI " + std::to_string(gsi));
}

void VmFd::unregister_irqfd(int eventfd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(eventfd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  ::ioctl(fd_.get(), KVM_IRQFD, &irqfd);
}

void VmFd::register_ioeventfd(int eventfd, uint64_t addr, uint32_t len, uint64_t datamatch) {
  kvm_ioeventfd io{};
  io.datamatch = datamatch;
  io.addr = addr;
  io.len = len;
  io.fd = eventfd;
  io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  if (::ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0)
    throw_errno(fmt::format("KVM_IOEVENTFD at {:#x}", addr));
}

std::unique_ptr<VcpuFd> VmFd::create_vcpu(uint32_t index, int mmap_size) {
  UniqueFd fd(::ioctl(fd_.get(), KVM_CREATE_VCPU, index));
  if (!fd) throw_errno("KVM_CREATE_VCPU " + std::to_string(index));
  Mapping run =
      Mapping::of_fd(fd.get(), static_cast<size_t>(mmap_size), PROT_READ | PROT_WRITE, MAP_SHARED);
  return std::make_unique<VcpuFd>(std::move(fd), std::move(run));
}

VcpuFd::VcpuFd(UniqueFd fd, Mapping run) : fd_(std::move(fd)), run_(std::move(run)) {}

int VcpuFd::run() {
  return ::ioctl(fd_.get(), KVM_RUN, 0) < 0 ? -errno : 0;
}

#define KILN_VCPU_GET(type, ioctl_nr, method)                             \
  type VcpuFd::method() const {                                           \
    type value{};                                                         \
    if (::ioctl(fd_.get(), ioctl_nr, &value) < 0) throw_errno(#ioctl_nr); \
    return value;                                                         \
  }
#define KILN_VCPU_SET(type, ioctl_nr, method)                             \
  void VcpuFd::method(const type& value) {                                \
    if (::ioctl(fd_.get(), ioctl_nr, &value) < 0) throw_errno(#ioctl_nr); \
  }
KILN_VCPU_GET(kvm_regs, KVM_GET_REGS, get_regs)
KILN_VCPU_SET(kvm_regs, KVM_SET_REGS, set_regs)
KILN_VCPU_GET(kvm_sregs, KVM_GET_SREGS, get_sregs)
KILN_VCPU_SET(kvm_sregs, KVM_SET_SREGS, set_sregs)
KILN_VCPU_SET(kvm_fpu, KVM_SET_FPU, set_fpu)
KILN_VCPU_GET(kvm_lapic_state, KVM_GET_LAPIC, get_lapic)
KILN_VCPU_SET(kvm_lapic_state, KVM_SET_LAPIC, set_lapic)
KILN_VCPU_GET(kvm_xcrs, KVM_GET_XCRS, get_xcrs)
KILN_VCPU_SET(kvm_xcrs, KVM_SET_XCRS, set_xcrs)
KILN_VCPU_GET(kvm_debugregs, KVM_GET_DEBUGREGS, get_debugregs)
KILN_VCPU_SET(kvm_debugregs, KVM_SET_DEBUGREGS, set_debugregs)
KILN_VCPU_GET(kvm_mp_state, KVM_GET_MP_STATE, get_mp_state)
KILN_VCPU_SET(kvm_mp_state, KVM_SET_MP_STATE, set_mp_state)
KILN_VCPU_GET(kvm_vcpu_events, KVM_GET_VCPU_EVENTS, get_vcpu_events)
KILN_VCPU_SET(kvm_vcpu_events, KVM_SET_VCPU_EVENTS, set_vcpu_events)
#undef KILN_VCPU_GET
#undef KILN_VCPU_SET

void VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& entries) {
  FlexBuffer<kvm_msrs, kvm_msr_entry> buf(entries.size());
  buf.header()->nmsrs = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.entries(), entries.data(), entries.size() * sizeof(kvm_msr_entry));
  const int n = ::ioctl(fd_.get(), KVM_SET_MSRS, buf.header());
  if (n < 0) throw_errno("KVM_SET_MSRS");
  if (static_cast<size_t>(n) != entries.size())
    throw Error("KVM_SET_MSRS: KVM refused MSR " + std::to_string(entries[n].index));
}

std::vector<kvm_msr_entry> VcpuFd::get_msrs(const std::vector<uint32_t>& indices) const {
  FlexBuffer<kvm_msrs, kvm_msr_entry> buf(indices.size());
  buf.header()->nmsrs = static_cast<uint32_t>(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) buf.entries()[i] = kvm_msr_entry{indices[i], 0, 0};
  const int n = ::ioctl(fd_.get(), KVM_GET_MSRS, buf.header());
  if (n < 0) throw_errno("KVM_GET_MSRS");
  return std::vector<kvm_msr_entry>(buf.entries(),
                                    buf.entries() + std::min<size_t>(n, indices.size()));
}

std::vector<uint8_t> VcpuFd::get_xsave(size_t size) const {
  std::vector<uint8_t> xsave(std::max(size, sizeof(kvm_xsave)));
  const unsigned long request = xsave.size() > sizeof(kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
  if (::ioctl(fd_.get(), request, xsave.data()) < 0) throw_errno("KVM_GET_XSAVE");
  return xsave;
}

void VcpuFd::set_xsave(const std::vector<uint8_t>& xsave) {
  if (xsave.size() < sizeof(kvm_xsave)) throw Error("KVM_SET_XSAVE: the state is too short");
  if (::ioctl(fd_.get(), KVM_SET_XSAVE, xsave.data()) < 0) throw_errno("KVM_SET_XSAVE");
}

uint32_t VcpuFd::get_tsc_khz() const {
  const int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) throw_errno("KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(khz);
}

void VcpuFd::set_tsc_khz(uint32_t khz) {
  if (::ioctl(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0)
    throw_errno("KVM_SET_TSC_KHZ " + std::to_string(khz));
}

bool VcpuFd::kvmclock_ctrl() {
  return ::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) == 0;
}

void VcpuFd::set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries) {
  FlexBuffer<kvm_cpuid2, kvm_cpuid_entry2> buf(entries.size());
  buf.header()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.entries(), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd_.get(), KVM_SET_CPUID2, buf.header()) < 0) throw_errno("KVM_SET_CPUID2");
}

}  // namespace kiln
