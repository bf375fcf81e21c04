// Address buses: the port-I/O bus and the MMIO bus on which devices register ranges.
// A vCPU exit for port I/O or MMIO is dispatched here; the device sees an offset into its range.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>

namespace kiln {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the base the device was registered at; data.size() is 1, 2, 4 or 8.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  // Registers [base, base+len). Throws kiln::Error if it overlaps a registered range.
  void insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device);
  // Dispatches an access. Returns false if no device covers [addr, addr+size).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Entry {
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // Finds the device covering the access; returns its base via `base`.
  const Entry* find(uint64_t addr, uint64_t size, uint64_t* base) const;

  std::string name_;
  mutable std::shared_mutex mutex_;   // writers: setup/hotplug; readers: vCPU threads
  std::map<uint64_t, Entry> ranges_;  // keyed by base
};

}  // namespace kiln
