#include "devices/legacy/i8042.h"

#include <algorithm>

namespace kiln {

namespace {
constexpr uint64_t kCommandOffset = I8042::kCommandPort - I8042::kDataPort;
constexpr uint8_t kCommandPulseReset = 0xfe;
}  // namespace

void I8042::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);  // status: output buffer empty, input buffer empty
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == kCommandOffset && !data.empty() && data[0] == kCommandPulseReset) on_reset_();
}

}  // namespace kiln
