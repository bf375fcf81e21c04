#include "vmm/vcpu.h"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace kiln {

namespace {

int kick_signal() {
  return SIGRTMIN;
}

const char* exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION:
      return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_HYPERCALL:
      return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG:
      return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT:
      return "KVM_EXIT_HLT";
    case KVM_EXIT_FAIL_ENTRY:
      return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_SHUTDOWN:
      return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_INTERNAL_ERROR:
      return "KVM_EXIT_INTERNAL_ERROR";
    default:
      return "unexpected exit";
  }
}

}  // namespace

Vcpu::Vcpu(uint32_t index, std::unique_ptr<VcpuFd> fd, const Bus& pio, const Bus& mmio,
           StopSignal& stop, Metrics& metrics)
    : index_(index), fd_(std::move(fd)), pio_(pio), mmio_(mmio), stop_(stop), metrics_(metrics) {}

Vcpu::~Vcpu() {
  kick();
  join();
}

void Vcpu::install_kick_signal_handler() {
  struct sigaction sa {};
  sa.sa_handler = [](int) {};  // only interrupts KVM_RUN
  sigemptyset(&sa.sa_mask);
  if (::sigaction(kick_signal(), &sa, nullptr) < 0) throw_errno("sigaction(vCPU kick signal)");
}

void Vcpu::start() {
  thread_ = std::thread([this] { run_loop(); });
  const std::string name = fmt::format("kiln-vcpu{}", index_);
  ::pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

void Vcpu::interrupt() {
  fd_->run_struct()->immediate_exit = 1;
  if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
}

void Vcpu::kick() {
  stopping_.store(true);
  { std::lock_guard lock(pause_mutex_); }
  pause_cv_.notify_all();
  interrupt();
}

void Vcpu::pause() {
  std::unique_lock lock(pause_mutex_);
  paused_ = true;
  if (!thread_.joinable()) return;
  interrupt();
  pause_cv_.wait(lock, [&] { return parked_ || exited_ || stopping_.load(); });
}

void Vcpu::resume() {
  {
    std::lock_guard lock(pause_mutex_);
    paused_ = false;
  }
  pause_cv_.notify_all();
}

bool Vcpu::wait_while_paused() {
  std::unique_lock lock(pause_mutex_);
  if (!paused_) return true;
  // The exit just handled may still need KVM to finish it (the data of a port or MMIO read
  // goes into the guest's registers on the next KVM_RUN): enter once with immediate_exit set,
  // so the state a snapshot reads while parked is whole (KVM API, "immediate_exit").
  fd_->run_struct()->immediate_exit = 1;
  fd_->run();
  parked_ = true;
  pause_cv_.notify_all();
  pause_cv_.wait(lock, [&] { return !paused_ || stopping_.load(); });
  parked_ = false;
  fd_->run_struct()->immediate_exit = 0;
  return !stopping_.load();
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::run_loop() {
  run_until_stopped();
  {
    std::lock_guard lock(pause_mutex_);
    exited_ = true;
  }
  pause_cv_.notify_all();
}

void Vcpu::run_until_stopped() {
  // The kick signal is blocked in every other thread (see Vmm); this one takes it.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  try {
    while (!stopping_.load()) {
      if (!wait_while_paused()) return;
      const int rc = fd_->run();
      if (rc == -EINTR || rc == -EAGAIN) continue;
      if (rc < 0) {
        stop_.request(
            {kExitVmError, fmt::format("vCPU {}: KVM_RUN failed: {}", index_, std::strerror(-rc))});
        return;
      }
      if (!handle_exit()) return;
    }
  } catch (const std::exception& e) {
    stop_.request({kExitVmError, fmt::format("vCPU {}: {}", index_, e.what())});
  }
}

bool Vcpu::handle_exit() {
  kvm_run& run = *fd_->run_struct();
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      Metrics::add(metrics_.vcpu_exits_io);
      handle_io(run);
      return true;
    case KVM_EXIT_MMIO:
      Metrics::add(metrics_.vcpu_exits_mmio);
      handle_mmio(run);
      return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      Metrics::add(metrics_.vcpu_exits_other);
      return true;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          stop_.request({kExitGuestStopped, "guest powered off"});
          return false;
        case KVM_SYSTEM_EVENT_RESET:
          stop_.request({kExitGuestStopped, "guest reset"});
          return false;
        default:
          stop_.request({kExitVmError, fmt::format("vCPU {}: guest system event {} (crash)", index_,
                                                   run.system_event.type)});
          return false;
      }
    case KVM_EXIT_SHUTDOWN:
      stop_.request({kExitVmError, fmt::format("vCPU {}: guest triple fault (KVM_EXIT_SHUTDOWN) "
                                               "at {}; the guest's state is unrecoverable",
                                               index_, rip_text())});
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      stop_.request({kExitVmError, internal_error_description(run)});
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      stop_.request(
          {kExitVmError,
           fmt::format("vCPU {}: KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, "
                       "hardware reason {:#x}) at {}",
                       index_, run.fail_entry.hardware_entry_failure_reason, rip_text())});
      return false;
    default:
      stop_.request({kExitVmError,
                     fmt::format("vCPU {}: unhandled exit {} ({}) at {}", index_, run.exit_reason,
                                 exit_reason_name(run.exit_reason), rip_text())});
      return false;
  }
}

void Vcpu::handle_io(kvm_run& run) {
  const size_t size = run.io.size;
  const size_t count = run.io.count;
  // KVM puts the data in the kvm_run mapping (on x86, the page after the struct); check it
  // lies inside the mapping before touching it.
  if (size == 0 || size > 8 || count > fd_->run_size() ||
      run.io.data_offset + size * count > fd_->run_size())
    return;
  uint8_t* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
  for (size_t i = 0; i < count; ++i, data += size) {
    std::span<uint8_t> bytes(data, size);
    if (run.io.direction == KVM_EXIT_IO_IN) {
      // No device: the bus floats high, as on a PC.
      if (!pio_.read(run.io.port, bytes)) std::fill(bytes.begin(), bytes.end(), 0xff);
    } else {
      pio_.write(run.io.port, bytes);
    }
  }
}

void Vcpu::handle_mmio(kvm_run& run) {
  const size_t len = std::min<size_t>(run.mmio.len, sizeof(run.mmio.data));
  std::span<uint8_t> bytes(run.mmio.data, len);
  if (run.mmio.is_write) {
    if (!mmio_.write(run.mmio.phys_addr, bytes))
      spdlog::debug("vCPU {}: MMIO write to {:#x} ({} bytes): no device", index_,
                    run.mmio.phys_addr, len);
  } else if (!mmio_.read(run.mmio.phys_addr, bytes)) {
    std::fill(bytes.begin(), bytes.end(), 0xff);
  }
}

std::string Vcpu::rip_text() const {
  try {
    const kvm_regs regs = fd_->get_regs();
    return fmt::format("RIP {:#x}", regs.rip);
  } catch (const std::exception&) {
    return "unknown RIP";
  }
}

std::string Vcpu::internal_error_description(const kvm_run& run) const {
  std::string text =
      fmt::format("vCPU {}: KVM internal error, suberror {}", index_, run.internal.suberror);
  if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION) text += " (emulation failure)";
  text += " at " + rip_text();
  if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
      (run.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
    const size_t n =
        std::min<size_t>(run.emulation_failure.insn_size, sizeof(run.emulation_failure.insn_bytes));
    text += ", instruction bytes:";
    for (size_t i = 0; i < n; ++i)
      text += fmt::format(" {:02x}", run.emulation_failure.insn_bytes[i]);
  } else {
    const size_t n = std::min<size_t>(run.internal.ndata, std::size(run.internal.data));
    if (n) text += ", data:";
    for (size_t i = 0; i < n; ++i) text += fmt::format(" {:#x}", run.internal.data[i]);
  }
  return text;
}

}  // namespace kiln
