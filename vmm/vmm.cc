#include "vmm/vmm.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>

#include <array>
#include <bit>
#include <thread>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/boot_cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"
#include "arch/x86_64/vcpu_state.h"
#include "arch/x86_64/vm_state.h"
#include "base/error.h"
#include "base/snapshot/bytes.h"
#include "base/snapshot/memory_file.h"
#include "base/snapshot/uffd.h"
#include "boot/linux_loader.h"

namespace kiln {

namespace {

std::vector<uint8_t> random_seed(size_t n) {
  std::vector<uint8_t> seed(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::getrandom(seed.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("getrandom for the guest's RNG seed");
    }
    got += static_cast<size_t>(r);
  }
  return seed;
}

// Device sections of the state file.
constexpr const char* kVmSection = "vm";
constexpr const char* kSerialSection = "device/serial";
constexpr const char* kI8042Section = "device/i8042";
constexpr const char* kAcpiPmSection = "device/acpi-pm";
constexpr const char* kMemorySection = "memory";

std::string vcpu_section(uint32_t index) {
  return "vcpu/" + std::to_string(index);
}

}  // namespace

Vmm::Vmm(const VmConfig& config, ConsoleFds console, Metrics* metrics, VmmRestore* restore,
         std::unique_ptr<PreparedVm> prepared)
    : config_(config),
      console_(console),
      console_output_(console.out),
      metrics_(metrics ? *metrics : own_metrics_),
      memory_(map_memory(config, restore, uffd_, prepared.get())),
      virtio_(config_, memory_, metrics_, console_hooks()),
      // A restored guest's memory holds its kernel and tables already.
      boot_info_(restore ? boot::LinuxBootInfo{} : load_kernel(prepared.get())),
      prepared_(prepared ? std::move(prepared) : std::make_unique<PreparedVm>()),
      kvm_(prepared_->kvm),
      vm_(prepared_->vm) {
  const int max_vcpus = kvm_.max_vcpus();
  if (config_.vcpus == 0 || config_.vcpus > static_cast<uint32_t>(max_vcpus))
    throw UsageError(
        fmt::format("--cpus {}: this host's KVM allows 1 to {} vCPUs", config_.vcpus, max_vcpus));
  if (!restore) write_acpi_tables();
  setup_memory();
  setup_devices();
  setup_vcpus(restore ? &restore->state : nullptr);
  if (restore) {
    restore_state(*restore);
    memory_base_ = true;
  }
}

GuestMemory Vmm::map_memory(const VmConfig& config, VmmRestore* restore, UniqueFd& uffd,
                            PreparedVm* prepared) {
  if (prepared) {  // a restore maps its own: the prepared RAM (if any) goes
    std::optional<GuestMemory> ready =
        prepared->take_memory(restore ? PreparedShape{} : PreparedShape::of(config));
    if (ready) return std::move(*ready);
  }
  const auto ranges = x86::ram_ranges(config.memory_mib << 20);
  if (!restore) return GuestMemory(ranges, config.huge_pages);
  if (config.huge_pages != HugePages::kNone)
    throw UsageError(
        "huge_pages: a restored guest's memory is mapped from its memory file; restore "
        "with huge_pages None");
  // The memory section: version, the guest's RAM bytes, the memory file's id.
  const std::vector<uint8_t>& section = restore->state.section(kMemorySection);
  snapshot::ByteReader r(section.data(), section.size(), kMemorySection);
  r.expect_version(1);
  const uint64_t size = r.u64();
  snapshot::MemoryId id;
  for (uint8_t& b : id) b = r.u8();
  r.finish();
  uint64_t want = 0;
  for (const auto& range : ranges) want += range.size;
  if (size != want)
    throw UsageError("snapshot: its guest has " + std::to_string(size) +
                     " bytes of RAM, its configuration " + std::to_string(want));
  if (restore->uffd) {
    // Anonymous and untouched: every first touch is a fault the handler answers.
    GuestMemory mem(ranges);
    uffd = snapshot::hand_memory_to_uffd_handler(mem, restore->memory_path);
    return mem;
  }
  const UniqueFd fd = snapshot::open_memory_file(restore->memory_path, size, id);
  return GuestMemory::map_private(ranges, fd.get());
}

Vmm::~Vmm() {
  shutdown();
}

void Vmm::setup_memory() {
  if (config_.track_dirty_pages) memory_.enable_dirty_tracking();
  if (prepared_->memory_slots_registered()) return;  // prepared for this configuration
  uint32_t slot = 0;
  for (const GuestRegion& region : memory_.regions()) {
    vm_.set_user_memory_region(slot++, region.base, region.size(), region.mapping.data(),
                               config_.track_dirty_pages);
  }
}

void Vmm::setup_devices() {
  auto serial_irq = std::make_shared<EventFd>();
  vm_.register_irqfd(serial_irq->fd(), Serial::kCom1Irq);
  const bool serial_console = config_.console == ConsoleMode::kSerial;
  serial_ = std::make_shared<Serial>(
      [this, serial_console](std::span<const uint8_t> bytes) {
        // Without the serial console, ttyS0 output goes nowhere.
        return serial_console ? console_output_.write(bytes) : bytes.size();
      },
      [serial_irq] { serial_irq->signal(); }, [this] { console_space(); });
  if (serial_console) console_input_ = serial_;
  if (config_.console == ConsoleMode::kVirtio) console_input_ = virtio_.console();
  // A stalled console reader pushes back on the device that carries the console.
  console_output_.set_space_callback(
      [serial = serial_, console = virtio_.console(), serial_console] {
        if (serial_console) serial->tx_space();
        if (console) console->output_space();
      });
  console_output_.attach(loop_);
  pio_bus_.insert(Serial::kCom1Port, 8, serial_);
  auto keyboard_irq = std::make_shared<EventFd>();
  vm_.register_irqfd(keyboard_irq->fd(), I8042::kIrq);
  i8042_ = std::make_shared<I8042>(
      [this] {
        stop_.request({kExitGuestStopped, "guest reset (i8042)"});
      },
      [keyboard_irq] { keyboard_irq->signal(); });
  pio_bus_.insert(I8042::kDataPort, I8042::kCommandPort - I8042::kDataPort + 1, i8042_);
  acpi_pm_ = std::make_shared<AcpiPm>(
      [this] {
        stop_.request({kExitGuestStopped, "guest powered off (ACPI S5)"});
      },
      [this] {
        stop_.request({kExitGuestStopped, "guest reset (ACPI)"});
      });
  pio_bus_.insert(AcpiPm::kBasePort, AcpiPm::kPortCount, acpi_pm_);
  virtio_.attach(vm_, mmio_bus_, loop_);
}

ConsoleHooks Vmm::console_hooks() {
  ConsoleHooks hooks;
  hooks.write = [this](std::span<const uint8_t> bytes) { return console_output_.write(bytes); };
  hooks.rx_space = [this] { console_space(); };
  winsize ws{};
  if (console_.out >= 0 && ::ioctl(console_.out, TIOCGWINSZ, &ws) == 0) {
    hooks.cols = ws.ws_col;
    hooks.rows = ws.ws_row;
  }
  return hooks;
}

void Vmm::console_resized() {
  winsize ws{};
  if (console_.out < 0 || ::ioctl(console_.out, TIOCGWINSZ, &ws) != 0) return;
  virtio_.console_resized(ws.ws_col, ws.ws_row);
}

boot::LinuxBootInfo Vmm::load_kernel(const PreparedVm* prepared) {
  x86::write_boot_tables(memory_);
  x86::write_mptable(memory_, config_.vcpus);  // refuses too many vCPUs before KVM is opened
  boot::LinuxBootConfig boot_config;
  boot_config.kernel_path = config_.kernel_path;
  boot_config.initrd_path = config_.initrd_path;
  boot_config.cmdline = append_kernel_parameters(config_.cmdline, virtio_.kernel_parameters());
  boot_config.rng_seed = random_seed(32);
  boot_config.acpi_rsdp = x86::kAcpiRsdpAddr;  // the tables follow in write_acpi_tables()
  boot_config.image_preloaded =
      prepared && prepared->image_preloaded(config_.kernel_path, config_.initrd_path);
  const boot::LinuxBootInfo info = boot::load_linux(memory_, boot_config);
  spdlog::debug("kernel entry {:#x}, boot_params {:#x}", info.entry, info.boot_params);
  return info;
}

void Vmm::write_acpi_tables() {
  acpi::MachineDescription machine;
  machine.vcpus = config_.vcpus;
  for (const VirtioDevices::Slot& s : virtio_.slots())
    machine.virtio.push_back({s.resources.base, s.resources.size, s.resources.irq});
  machine.com1_port = Serial::kCom1Port;
  machine.com1_irq = static_cast<uint8_t>(Serial::kCom1Irq);
  machine.pm = {AcpiPm::kSleepControlPort, AcpiPm::kSleepStatusPort, AcpiPm::kResetPort,
                AcpiPm::kResetValue, AcpiPm::kS5SleepType};
  const acpi::Tables tables = acpi::build_tables(machine);
  acpi::write_tables(memory_, tables);
  spdlog::debug("ACPI: RSDP at {:#x}, DSDT at {:#x} ({} bytes), {} vCPUs, {} virtio devices",
                tables.rsdp.addr, tables.dsdt.addr, tables.dsdt.bytes.size(), machine.vcpus,
                machine.virtio.size());
}

void Vmm::setup_vcpus(const snapshot::StateFile* restore) {
  Vcpu::install_kick_signal_handler();
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    const bool ready = i == 0 && prepared_->vcpu0_ready_for(config_.vcpus);
    auto fd = i == 0 && prepared_->vcpu0 ? std::move(prepared_->vcpu0)
                                         : vm_.create_vcpu(i, kvm_.vcpu_mmap_size());
    if (!ready) x86::setup_vcpu_common(kvm_, *fd, i, config_.vcpus);
    if (restore) {
      const std::string name = vcpu_section(i);
      x86::restore_vcpu_state(*fd, x86::decode_vcpu_state(restore->section(name), name));
    } else if (i == 0) {
      // The boot vCPU starts at the kernel; the others wait in the in-kernel LAPIC for the
      // guest's INIT/SIPI.
      x86::setup_boot_vcpu_registers(*fd, boot_info_.entry, boot_info_.boot_params);
    }
    vcpus_.push_back(
        std::make_unique<Vcpu>(i, std::move(fd), pio_bus_, mmio_bus_, stop_, metrics_));
  }
}

void Vmm::restore_state(const VmmRestore& restore) {
  const snapshot::StateFile& state = restore.state;
  if (state.has(vcpu_section(config_.vcpus)))
    throw UsageError("the snapshot has more vCPUs than its configuration");
  std::vector<x86::VcpuState> vcpus;
  for (auto& vcpu : vcpus_) {
    const std::string name = vcpu_section(vcpu->index());
    vcpus.push_back(x86::decode_vcpu_state(state.section(name), name));
  }
  // kvmclock (restored last of the VM's state) and then at once every vCPU's TSC.
  x86::restore_vm_state(vm_, x86::decode_vm_state(state.section(kVmSection), kVmSection),
                        restore.clock_realtime);
  for (size_t i = 0; i < vcpus_.size(); ++i) x86::restore_vcpu_tsc(vcpus_[i]->fd(), vcpus[i]);
  serial_->restore(state.section(kSerialSection));
  i8042_->restore(state.section(kI8042Section));
  acpi_pm_->restore(state.section(kAcpiPmSection));
  virtio_.restore(state);
}

void Vmm::save_snapshot(snapshot::StateWriter& writer, const std::string& state_path,
                        const std::string& memory_path, bool diff) {
  if (!paused_) throw Error("snapshot: the VM must be paused first");
  const std::vector<uint32_t> msrs = x86::saveable_msrs(kvm_, vcpus_.front()->fd());
  for (auto& vcpu : vcpus_)
    writer.add(vcpu_section(vcpu->index()),
               x86::encode_vcpu_state(x86::save_vcpu_state(kvm_, vcpu->fd(), msrs)));
  writer.add(kVmSection, x86::encode_vm_state(x86::save_vm_state(vm_)));
  writer.add(kSerialSection, serial_->save());
  writer.add(kI8042Section, i8042_->save());
  writer.add(kAcpiPmSection, acpi_pm_->save());
  virtio_.save(writer);
  save_memory(writer, memory_path, diff);
  try {
    writer.commit(state_path);
  } catch (...) {
    memory_base_ = false;  // see save_memory
    throw;
  }
}

std::vector<std::vector<uint64_t>> Vmm::take_dirty_logs() {
  // The guest's writes (KVM) and Kiln's own (devices, through GuestMemory).
  std::vector<std::vector<uint64_t>> logs = memory_.take_dirty();
  logs.resize(memory_.regions().size());
  uint32_t slot = 0;
  for (const GuestRegion& region : memory_.regions()) {
    std::vector<uint64_t> kvm = vm_.take_dirty_log(slot, region.size());
    std::vector<uint64_t>& log = logs[slot++];
    log.resize(kvm.size());
    for (size_t w = 0; w < kvm.size(); ++w) log[w] |= kvm[w];
  }
  return logs;
}

void Vmm::save_memory(snapshot::StateWriter& writer, const std::string& path, bool diff) {
  if (diff && !config_.track_dirty_pages)
    throw UsageError(
        "snapshot_type Diff: the VM does not track dirty pages (machine-config "
        "track_dirty_pages)");
  if (diff && !memory_base_)
    throw UsageError(
        "snapshot_type Diff: take a Full snapshot of this VM first (a Diff holds only the "
        "pages written since the last snapshot, merged onto that one's memory file)");
  const snapshot::MemoryId id = snapshot::new_memory_id();
  // Taking the dirty log starts a new one: if this snapshot then fails, the pages it held are
  // in no file, and the next Diff would miss them. Until one succeeds, only a Full will do.
  memory_base_ = false;
  if (diff) {
    const auto dirty = take_dirty_logs();
    snapshot::write_memory_file(memory_, path, id, &dirty);
  } else {
    if (config_.track_dirty_pages) take_dirty_logs();  // the next Diff starts from here
    snapshot::write_memory_file(memory_, path, id);
  }
  memory_base_ = true;
  snapshot::ByteWriter w;
  w.u16(1);
  w.u64(memory_.total_size());
  for (uint8_t b : id) w.u8(b);
  writer.add(kMemorySection, w.take());
}

void Vmm::watch_console_input() {
  if (console_.in < 0 || !console_input_) return;
  console_reader_ = std::make_unique<ConsoleReader>(loop_, console_.in, *console_input_, [this] {
    stop_.request({kExitUserStop, "stopped from the console (Ctrl-A x)"});
  });
  try {
    console_reader_->start();
  } catch (const Error& e) {
    // /dev/null, a regular file or a closed fd cannot be polled: run without console input.
    spdlog::info("console input disabled: {}", e.what());
  }
}

void Vmm::console_space() {
  if (console_reader_) console_reader_->space_available();
}

void Vmm::start() {
  // The vCPU kick signal is taken only by vCPU threads: block it here before threads inherit
  // this thread's mask.
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, SIGRTMIN);
  ::pthread_sigmask(SIG_BLOCK, &kick, &saved_mask_);
  watch_console_input();
  loop_thread_ = std::thread([this] { loop_.run(); });
  ::pthread_setname_np(loop_thread_.native_handle(), "kiln-events");
  for (auto& vcpu : vcpus_) vcpu->start();
  started_ = true;
}

StopReason Vmm::shutdown() {
  stop_.request({kExitUserStop, "stopped by the VMM"});  // no-op if the guest stopped first
  if (started_) {
    for (auto& vcpu : vcpus_) vcpu->kick();
    for (auto& vcpu : vcpus_) vcpu->join();
    loop_.stop();
    loop_thread_.join();
    console_output_.drain(1000);  // what a slow console reader has not taken yet
    if (config_.track_dirty_pages) log_dirty_pages();
    ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    started_ = false;
  }
  return stop_.wait();
}

void Vmm::log_dirty_pages() {
  uint64_t dirty = 0, pages = 0;
  for (const auto& log : take_dirty_logs())
    for (uint64_t word : log) dirty += std::popcount(word);
  for (const GuestRegion& region : memory_.regions()) pages += region.size() / 4096;
  spdlog::info("dirty page tracking: {} of {} guest pages written since the last log", dirty,
               pages);
}

StopReason Vmm::run() {
  start();
  stop_.wait();
  return shutdown();
}

void Vmm::pause() {
  if (paused_) return;
  // vCPUs first (no new guest requests), then the devices (waits for work in progress).
  for (auto& vcpu : vcpus_) {
    vcpu->pause();
    vcpu->fd().kvmclock_ctrl();  // a guest without kvmclock has nothing to be told
  }
  virtio_.pause();
  if (console_reader_) console_reader_->pause();
  paused_ = true;
}

void Vmm::resume() {
  if (!paused_) return;
  // Devices first: kicks and host input that waited are handled before the guest runs on.
  if (console_reader_) console_reader_->resume();
  virtio_.resume();
  for (auto& vcpu : vcpus_) vcpu->resume();
  paused_ = false;
}

void Vmm::replace_drive(const std::string& id, const std::string& path) {
  virtio_.replace_drive(id, path);
}

}  // namespace kiln
