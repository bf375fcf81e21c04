// The device-lifecycle hook for snapshots (issue 17), beside Pausable: a paused object's state
// as bytes, and that state put back into a fresh object built from the same configuration.
// Each implementation writes a version first (ByteWriter, base/snapshot/bytes.h) and checks
// every value it reads back against the device's own bounds: a state file is user input.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kiln {

class Snapshottable {
 public:
  virtual ~Snapshottable() = default;
  // The state, while paused (no guest access runs).
  virtual std::vector<uint8_t> save() const = 0;
  // Replaces the state with what save() wrote. Throws kiln::Error naming what is wrong if the
  // bytes are not such a state (truncated, another version, out of bounds); the object is then
  // as it was.
  virtual void restore(std::span<const uint8_t> state) = 0;
};

}  // namespace kiln
