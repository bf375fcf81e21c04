// The ACPI power-management registers of Kiln's hardware-reduced FADT, on one port-I/O range:
//
//   base + 0  sleep control (SLEEP_CONTROL_REG): SLP_TYP in bits 4:2, SLP_EN bit 5. SLP_EN with
//             SLP_TYP = kS5SleepType (the DSDT's \_S5) powers the machine off.
//   base + 1  sleep status (SLEEP_STATUS_REG): reads 0 (the machine never wakes); writes ignored.
//   base + 2  reset (RESET_REG): writing kResetValue resets the machine.
//
// Kiln treats power-off and reset as the guest asking to stop; `kiln` exits 0. Other sleep
// states are not offered in the DSDT and are ignored.
#pragma once

#include <functional>
#include <mutex>

#include "base/bus.h"
#include "base/log_limiter.h"
#include "base/snapshottable.h"

namespace kiln {

// Snapshottable, though it holds no state between accesses (a write acts at once): its section
// carries only a version, so a state file from a later Kiln whose PM has state is refused.
class AcpiPm : public BusDevice, public Snapshottable {
 public:
  static constexpr uint16_t kBasePort = 0x600;
  static constexpr uint16_t kPortCount = 3;
  static constexpr uint16_t kSleepControlPort = kBasePort;
  static constexpr uint16_t kSleepStatusPort = kBasePort + 1;
  static constexpr uint16_t kResetPort = kBasePort + 2;
  static constexpr uint8_t kResetValue = 0x01;
  static constexpr uint8_t kS5SleepType = 5;
  static constexpr uint8_t kSleepTypeShift = 2;
  static constexpr uint8_t kSleepTypeMask = 0x7 << kSleepTypeShift;
  static constexpr uint8_t kSleepEnable = 1 << 5;

  using Action = std::function<void()>;
  AcpiPm(Action on_power_off, Action on_reset)
      : on_power_off_(std::move(on_power_off)), on_reset_(std::move(on_reset)) {}
  // Registered over kBasePort .. kBasePort + kPortCount - 1; only the first byte of an access
  // counts (the registers are 8 bits wide).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  std::vector<uint8_t> save() const override;
  void restore(std::span<const uint8_t> state) override;

 private:
  Action on_power_off_;
  Action on_reset_;
  std::mutex log_mutex_;  // vCPU threads write concurrently
  LogLimiter log_limit_;  // guarded by log_mutex_
};

}  // namespace kiln
