#include "devices/virtio/console/console_device.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "devices/virtio/chain_io.h"

namespace kiln::virtio {

namespace {

constexpr uint32_t kFSize = 0;  // VIRTIO_CONSOLE_F_SIZE: cols and rows in config space
constexpr size_t kChunk = 4096;

// struct virtio_console_config.
struct ConsoleConfig {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};
static_assert(sizeof(ConsoleConfig) == 12);

}  // namespace

ConsoleDevice::ConsoleDevice(Output output, Notify rx_space, uint16_t cols, uint16_t rows)
    : output_(std::move(output)), rx_space_(std::move(rx_space)), cols_(cols), rows_(rows) {}

uint64_t ConsoleDevice::device_features() const {
  return feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc) |
         feature(kFSize);
}

void ConsoleDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // set_size() runs on another thread: snapshot cols and rows under our lock.
  ConsoleConfig config{};
  {
    std::lock_guard lock(mutex_);
    config.cols = cols_;
    config.rows = rows_;
  }
  config.max_nr_ports = 1;
  read_config_bytes(config_view(config), offset, data);
}

void ConsoleDevice::activate(uint64_t /*features*/) {
  std::lock_guard lock(mutex_);
  active_ = true;
  if (!rx_.empty()) wake_.signal();  // input typed before the driver came up
}

void ConsoleDevice::reset() {
  std::lock_guard lock(mutex_);
  active_ = false;
  tx_drain_.reset();  // the chain in progress belongs to the old rings
  rx_drain_.reset();
  tx_offset_ = 0;
  wake_.consume();
}

size_t ConsoleDevice::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  const size_t n = std::min(bytes.size(), kRxCapacity - rx_.size());
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  // Full now or refusing bytes: the caller waits for rx_space, which comes with the next room.
  if (n < bytes.size() || rx_.size() == kRxCapacity) rx_was_full_ = true;
  if (n > 0 && active_) wake_.signal();
  return n;
}

size_t ConsoleDevice::rx_room() const {
  std::lock_guard lock(mutex_);
  return kRxCapacity - rx_.size();
}

void ConsoleDevice::set_size(uint16_t cols, uint16_t rows) {
  std::lock_guard lock(mutex_);
  cols_ = cols;
  rows_ = rows;
}

std::string ConsoleDevice::process_queue(size_t index, Queue& queue, const GuestMemory& mem) {
  return index == kTransmitQueue ? transmit(queue, mem) : receive(queue, mem);
}

std::string ConsoleDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  wake_.consume();
  if (queues.size() <= kTransmitQueue) return "";
  // A queue the driver did not set up has no rings (its addresses are 0): leave it alone.
  if (queues[kTransmitQueue].ready) {
    const std::string error = transmit(queues[kTransmitQueue], mem);
    if (!error.empty()) return error;
  }
  if (!queues[kReceiveQueue].ready) return "";  // input stays buffered
  return receive(queues[kReceiveQueue], mem);
}

std::string ConsoleDevice::receive(Queue& queue, const GuestMemory& mem) {
  bool room_freed = false;
  const DrainResult result = rx_drain_.drain(
      queue, mem, [](const std::string&) {},
      [&](const DescriptorChain& chain) {
        uint32_t written = 0;
        std::lock_guard lock(mutex_);
        const size_t n = std::min<uint64_t>(chain.writable_bytes, rx_.size());
        bytes_.assign(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
        if (n > 0 && chain_write(mem, chain, 0, bytes_)) {
          rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
          written = static_cast<uint32_t>(n);
          if (rx_was_full_) {
            rx_was_full_ = false;
            room_freed = true;
          }
        } else if (log_limit_.allow()) {
          spdlog::warn("virtio-console: receive buffer not writable or outside guest memory");
        }
        return DrainStep::used(written);
      },
      [&] {
        std::lock_guard lock(mutex_);
        return !rx_.empty();  // else input stays buffered until the driver adds buffers
      });
  if (!result.error.empty()) return result.error;
  if (room_freed && rx_space_) rx_space_();
  return "";
}

std::string ConsoleDevice::transmit(Queue& queue, const GuestMemory& mem) {
  return tx_drain_
      .drain(
          queue, mem, [](const std::string&) {},
          [&](const DescriptorChain& chain) {
            const uint64_t total = chain.readable_bytes;
            while (tx_offset_ < total) {
              bytes_.resize(std::min<uint64_t>(kChunk, total - tx_offset_));
              if (!chain_read(mem, chain, tx_offset_, bytes_)) {
                if (log_limit_.allow())
                  spdlog::warn("virtio-console: transmit buffer outside memory");
                break;
              }
              const size_t taken = output_ ? output_(bytes_) : bytes_.size();
              tx_offset_ += taken;
              // The sink is full: this chain waits (and no other is taken) until
              // output_space().
              if (taken < bytes_.size()) return DrainStep::hold();
            }
            tx_offset_ = 0;
            return DrainStep::used(0);
          })
      .error;
}

std::optional<std::vector<uint8_t>> ConsoleDevice::save_state() const {
  std::lock_guard lock(mutex_);
  snapshot::ByteWriter w;
  w.u16(1);
  w.blob(std::string(rx_.begin(), rx_.end()));
  w.u8(rx_was_full_ ? 1 : 0);
  w.u8(tx_drain_.held() ? 1 : 0);
  w.u64(tx_offset_);
  return w.take();
}

void ConsoleDevice::restore_state(std::span<const uint8_t> state, std::span<Queue> queues) {
  snapshot::ByteReader r(state.data(), state.size(), "virtio-console state");
  r.expect_version(1);
  const std::string rx = r.blob(kRxCapacity);
  const uint8_t was_full = r.u8(), held = r.u8();
  const uint64_t offset = r.u64();
  r.finish();
  // A held chain is the last the transmit queue handed out (an offset past its end only
  // completes it).
  if (was_full > 1 || held > 1 || (!held && offset != 0) || queues.size() <= kTransmitQueue ||
      (held && !queues[kTransmitQueue].ready))
    throw kiln::Error("virtio-console state: a value the device never holds");
  std::lock_guard lock(mutex_);
  rx_.assign(rx.begin(), rx.end());
  rx_was_full_ = was_full == 1;
  // The chain in progress goes back to the driver's ring: the next drain pops it again and
  // goes on at tx_offset_.
  if (held) queues[kTransmitQueue].undo_pop();
  tx_offset_ = offset;
  tx_drain_.reset();
  rx_drain_.reset();
}

}  // namespace kiln::virtio
