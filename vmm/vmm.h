// The VMM controller: builds one VM from a VmConfig (KVM, guest memory, irqchip, devices, the
// kernel, vCPUs), runs it, and tears it down in order.
//
// Threads while running: the caller's thread waits for a StopReason; one thread per vCPU runs
// KVM_RUN; one event-loop thread runs device-side handlers (console input, signals).
#pragma once

#include <memory>
#include <vector>

#include "boot/linux_loader.h"
#include "devices/legacy/serial.h"
#include "vmm/bus.h"
#include "vmm/console_escape.h"
#include "vmm/event_fd.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/stop.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_config.h"

namespace kiln {

class Vmm {
 public:
  // Validates the configuration and builds the VM; nothing runs yet. Throws UsageError for
  // bad input (image files, sizes), kiln::Error for host failures.
  Vmm(const VmConfig& config, ConsoleFds console);
  ~Vmm();

  // Runs the guest until it stops; returns why. Call once.
  StopReason run();

 private:
  void setup_memory();
  void setup_devices();
  boot::LinuxBootInfo load_kernel();
  void setup_vcpus();
  void watch_console_input();
  void add_console_input();
  void watch_signals();

  VmConfig config_;
  ConsoleFds console_;
  StopSignal stop_;
  // Guest RAM is mapped and the kernel loaded (and so every image validated) before /dev/kvm is
  // opened: bad input fails the same way on any host.
  GuestMemory memory_;
  VirtioDevices virtio_;
  boot::LinuxBootInfo boot_info_;
  KvmSystem kvm_;
  VmFd vm_;
  Bus pio_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  EventLoop loop_;
  std::shared_ptr<Serial> serial_;
  EventFd rx_space_;             // the UART has receive room again
  bool console_paused_ = false;  // event-loop thread only
  ConsoleEscape console_escape_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  UniqueFd signal_fd_;
};

}  // namespace kiln
