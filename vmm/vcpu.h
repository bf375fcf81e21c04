// One vCPU thread: KVM_RUN in a loop, each exit dispatched to the port-I/O or MMIO bus, and the
// exits that end the VM (shutdown, system events, KVM errors) turned into a StopReason.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/bus.h"
#include "base/kvm.h"
#include "base/metrics.h"
#include "base/stop.h"

namespace kiln {

class Vcpu {
 public:
  Vcpu(uint32_t index, std::unique_ptr<VcpuFd> fd, const Bus& pio, const Bus& mmio,
       StopSignal& stop, Metrics& metrics);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  VcpuFd& fd() { return *fd_; }
  uint32_t index() const { return index_; }

  void start();
  // Makes the thread leave KVM_RUN and return; thread-safe, idempotent.
  void kick();
  void join();
  // Parks the thread outside KVM_RUN (returns once it is parked) / lets it run again.
  void pause();
  void resume();

  // Installs the (empty) handler of the signal kick() sends. Call once before any start().
  static void install_kick_signal_handler();

 private:
  void run_loop();
  void run_until_stopped();
  // Handles one exit; returns false when the VM must stop (the reason was already requested).
  bool handle_exit();
  void handle_io(kvm_run& run);
  void handle_mmio(kvm_run& run);
  std::string internal_error_description(const kvm_run& run) const;
  std::string rip_text() const;

  uint32_t index_;
  std::unique_ptr<VcpuFd> fd_;
  const Bus& pio_;
  const Bus& mmio_;
  StopSignal& stop_;
  Metrics& metrics_;
  // Interrupts KVM_RUN: immediate_exit plus the kick signal.
  void interrupt();
  // Blocks while paused_; returns false if the thread must stop.
  bool wait_while_paused();

  std::atomic<bool> stopping_{false};
  std::mutex pause_mutex_;
  std::condition_variable pause_cv_;
  bool paused_ = false;  // guarded by pause_mutex_
  bool parked_ = false;  // guarded by pause_mutex_
  bool exited_ = false;  // guarded by pause_mutex_: run_loop returned
  std::thread thread_;
};

}  // namespace kiln
