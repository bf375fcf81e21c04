// One VM: built from a VmConfig (guest memory, kernel, devices, KVM, irqchip, vCPUs), started,
// paused and resumed, and torn down in order. The controller (vmm/controller.h) drives it.
//
// Threads while running: one per vCPU running KVM_RUN; one event-loop thread running the
// device-side handlers (console input, virtio queue notifications).
#pragma once

#include <memory>
#include <vector>

#include "base/bus.h"
#include "base/event_fd.h"
#include "base/event_loop.h"
#include "base/guest_memory.h"
#include "base/kvm.h"
#include "base/metrics.h"
#include "base/snapshot/state_file.h"
#include "base/stop.h"
#include "boot/linux_loader.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "vmm/console_output.h"
#include "vmm/console_reader.h"
#include "vmm/prepared_vm.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"

namespace kiln {

// What a VM restored from a snapshot is built from: its state file (already checked) and its
// memory file (opened by snapshot::open_memory_file, mapped copy-on-write).
struct VmmRestore {
  const snapshot::StateFile& state;
  std::string memory_path;      // the memory file, or with `uffd` the handler's socket
  bool uffd = false;            // see snapshot::hand_memory_to_uffd_handler
  bool clock_realtime = false;  // see x86::restore_vm_state
};

class Vmm {
 public:
  // Validates the configuration and builds the VM; nothing runs yet. Throws UsageError for
  // bad input (image files, sizes), kiln::Error for host failures.
  // `metrics` must outlive the Vmm; by default the Vmm counts into its own.
  // With `restore`, the VM is the snapshot's: memory, vCPUs, irqchip and devices as they were
  // (the kernel is not loaded again); `config` must be the one the snapshot was taken with.
  // `prepared`: a KVM VM made beforehand (none: one is made here).
  Vmm(const VmConfig& config, ConsoleFds console, Metrics* metrics = nullptr,
      VmmRestore* restore = nullptr, std::unique_ptr<PreparedVm> prepared = nullptr);
  ~Vmm();

  // Starts the event loop and the vCPUs. Call once, from a thread that has the stop signals
  // blocked (the controller's) or does not care about them.
  void start();
  // Any thread may request a stop; its fd is signalled once one was requested.
  StopSignal& stop_signal() { return stop_; }
  // Stops and joins every thread; returns why the VM stopped. Idempotent.
  StopReason shutdown();
  // start(), wait for a stop request, shutdown().
  StopReason run();

  // Stops the vCPUs, then every device's work (virtio queues and host fds, console input):
  // while paused nothing writes guest memory or touches host I/O on the VM's behalf; what
  // arrives meanwhile is handled after resume().
  void pause();
  void resume();
  // A snapshot, while paused (kiln::Error otherwise): the VM's, each vCPU's and each device's
  // section added to `writer` (which may hold the caller's already; refusals come here, before
  // any file is written), then the memory file at `memory_path`, every page (Full) or those
  // written since the last snapshot (Diff, with track_dirty_pages), then the state file at
  // `state_path`, last. A Full snapshot restarts the dirty log.
  void save_snapshot(snapshot::StateWriter& writer, const std::string& state_path,
                     const std::string& memory_path, bool diff);
  // Keeps `fd` open for the VM's life (e.g. the serial output file).
  void adopt_fd(UniqueFd fd) { adopted_fds_.push_back(std::move(fd)); }
  // Points drive `id` at a new image and tells the guest its capacity may have changed.
  // Throws UsageError (bad image, unknown drive).
  void replace_drive(const std::string& id, const std::string& path);
  VirtioDevices& virtio() { return virtio_; }
  void update_drive_rate_limiter(const std::string& id, const RateLimiterUpdate& update) {
    virtio_.update_drive_rate_limiter(id, update);
  }
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterUpdate& rx,
                                const RateLimiterUpdate& tx) {
    virtio_.update_net_rate_limiters(iface_id, rx, tx);
  }
  // Presses and releases Ctrl-Alt-Del on the guest's i8042 keyboard.
  I8042::KeyResult send_ctrl_alt_del() { return i8042_->send_ctrl_alt_del(); }
  // The host terminal was resized (SIGWINCH): a virtio-console passes the new size on.
  void console_resized();

 private:
  // With track_dirty_pages: how many guest pages KVM saw written (info log; the log restarts).
  void log_dirty_pages();
  void setup_memory();
  void setup_devices();
  // `prepared` (if any) may hold the kernel and initrd already (PreparedVm::image_preloaded).
  boot::LinuxBootInfo load_kernel(const PreparedVm* prepared);
  // ACPI tables for the configured vCPUs and virtio devices (RSDP at x86::kAcpiRsdpAddr).
  void write_acpi_tables();
  void setup_vcpus(const snapshot::StateFile* restore);
  // The VM's and the devices' sections put back (vCPUs: setup_vcpus).
  void restore_state(const VmmRestore& restore);
  void save_memory(snapshot::StateWriter& writer, const std::string& path, bool diff);
  // With a Uffd restore, `uffd` gets the userfaultfd the handler serves. `prepared`'s RAM is
  // taken when it is what the configuration asks.
  static GuestMemory map_memory(const VmConfig& config, VmmRestore* restore, UniqueFd& uffd,
                                PreparedVm* prepared);
  // The dirty log of every memory slot (KVM starts a new one).
  std::vector<std::vector<uint64_t>> take_dirty_logs();
  void watch_console_input();
  ConsoleHooks console_hooks();
  // The console input device has room again (its rx_space callback, any thread).
  void console_space();

  VmConfig config_;
  ConsoleFds console_;
  ConsoleOutput console_output_;  // guest console output, never blocking (flushed by loop_)
  Metrics own_metrics_;
  Metrics& metrics_;
  StopSignal stop_;
  // Guest RAM is mapped and the kernel loaded (and so every image validated) before /dev/kvm is
  // opened: bad input fails the same way on any host.
  UniqueFd uffd_;  // a Uffd restore's userfaultfd (outlives memory_: declared before it)
  GuestMemory memory_;
  VirtioDevices virtio_;
  boot::LinuxBootInfo boot_info_;
  std::unique_ptr<PreparedVm> prepared_;  // owns the KVM handles below
  KvmSystem& kvm_;
  VmFd& vm_;
  Bus pio_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  EventLoop loop_;
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<I8042> i8042_;
  std::shared_ptr<AcpiPm> acpi_pm_;
  std::shared_ptr<ConsoleInput> console_input_;    // UART or virtio-console; null: no input
  std::unique_ptr<ConsoleReader> console_reader_;  // set before any thread starts
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::vector<UniqueFd> adopted_fds_;
  std::thread loop_thread_;
  bool started_ = false;
  bool paused_ = false;  // controller thread only
  // A memory file a Diff can be merged onto exists: the VM was restored from one, or a Full
  // snapshot was taken (controller thread only).
  bool memory_base_ = false;
  sigset_t saved_mask_{};
};

}  // namespace kiln
