#include "devices/legacy/acpi_pm.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/snapshot/bytes.h"

namespace kiln {

namespace {
constexpr uint64_t kSleepControl = AcpiPm::kSleepControlPort - AcpiPm::kBasePort;
constexpr uint64_t kReset = AcpiPm::kResetPort - AcpiPm::kBasePort;
}  // namespace

void AcpiPm::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);  // no sleep-state bits, WAK_STS clear
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint8_t value = data[0];
  if (offset == kSleepControl && (value & kSleepEnable)) {
    const uint8_t type = (value & kSleepTypeMask) >> kSleepTypeShift;
    if (type == kS5SleepType) {
      on_power_off_();
    } else if (std::lock_guard lock(log_mutex_); log_limit_.allow()) {
      spdlog::warn("ACPI: guest asked for sleep type {}, which Kiln does not offer; ignored", type);
    }
  } else if (offset == kReset && value == kResetValue) {
    on_reset_();
  }
}

std::vector<uint8_t> AcpiPm::save() const {
  snapshot::ByteWriter w;
  w.u16(1);
  return w.take();
}

void AcpiPm::restore(std::span<const uint8_t> state) {
  snapshot::ByteReader r(state.data(), state.size(), "ACPI PM state");
  r.expect_version(1);
  r.finish();
}

}  // namespace kiln
