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
#include "base/error.h"
#include "boot/linux_loader.h"
#include "devices/legacy/acpi_pm.h"

namespace kiln {

namespace {

constexpr uint64_t kTssAddr = 0xfffbd000;          // three pages KVM needs on Intel VMX
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;  // one page, just below

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

}  // namespace

Vmm::Vmm(const VmConfig& config, ConsoleFds console, Metrics* metrics)
    : config_(config),
      console_(console),
      console_output_(console.out),
      metrics_(metrics ? *metrics : own_metrics_),
      memory_(x86::ram_ranges(config.memory_mib << 20), config.huge_pages),
      virtio_(config_, memory_, metrics_, console_hooks()),
      boot_info_(load_kernel()),
      kvm_(),
      vm_(kvm_) {
  const int max_vcpus = kvm_.max_vcpus();
  if (config_.vcpus == 0 || config_.vcpus > static_cast<uint32_t>(max_vcpus))
    throw UsageError(
        fmt::format("--cpus {}: this host's KVM allows 1 to {} vCPUs", config_.vcpus, max_vcpus));
  write_acpi_tables();
  setup_memory();
  vm_.set_tss_addr(kTssAddr);
  vm_.set_identity_map_addr(kIdentityMapAddr);
  vm_.create_irqchip();
  vm_.create_pit2();
  setup_devices();
  setup_vcpus();
}

Vmm::~Vmm() {
  shutdown();
}

void Vmm::setup_memory() {
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
  pio_bus_.insert(AcpiPm::kBasePort, AcpiPm::kPortCount,
                  std::make_shared<AcpiPm>(
                      [this] {
                        stop_.request({kExitGuestStopped, "guest powered off (ACPI S5)"});
                      },
                      [this] {
                        stop_.request({kExitGuestStopped, "guest reset (ACPI)"});
                      }));
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

boot::LinuxBootInfo Vmm::load_kernel() {
  x86::write_boot_tables(memory_);
  x86::write_mptable(memory_, config_.vcpus);  // refuses too many vCPUs before KVM is opened
  boot::LinuxBootConfig boot_config;
  boot_config.kernel_path = config_.kernel_path;
  boot_config.initrd_path = config_.initrd_path;
  boot_config.cmdline = append_kernel_parameters(config_.cmdline, virtio_.kernel_parameters());
  boot_config.rng_seed = random_seed(32);
  boot_config.acpi_rsdp = x86::kAcpiRsdpAddr;  // the tables follow in write_acpi_tables()
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

void Vmm::setup_vcpus() {
  Vcpu::install_kick_signal_handler();
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    auto fd = vm_.create_vcpu(i, kvm_.vcpu_mmap_size());
    x86::setup_vcpu_common(kvm_, *fd, i, config_.vcpus);
    // The boot vCPU starts at the kernel; the others wait in the in-kernel LAPIC for the
    // guest's INIT/SIPI.
    if (i == 0) x86::setup_boot_vcpu_registers(*fd, boot_info_.entry, boot_info_.boot_params);
    vcpus_.push_back(
        std::make_unique<Vcpu>(i, std::move(fd), pio_bus_, mmio_bus_, stop_, metrics_));
  }
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
  uint32_t slot = 0;
  for (const GuestRegion& region : memory_.regions()) {
    for (uint64_t word : vm_.take_dirty_log(slot++, region.size())) dirty += std::popcount(word);
    pages += region.size() / 4096;
  }
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
  for (auto& vcpu : vcpus_) vcpu->pause();
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
