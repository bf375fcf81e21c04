#include "devices/legacy/serial.h"

namespace kiln {

namespace {
// Register offsets.
constexpr uint64_t kData = 0;  // RBR (read) / THR (write); DLL when DLAB
constexpr uint64_t kIer = 1;   // DLM when DLAB
constexpr uint64_t kIir = 2;   // IIR (read) / FCR (write)
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRxData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrIdle = 0x40;
constexpr uint8_t kMsrDcd = 0x80, kMsrDsr = 0x20, kMsrCts = 0x10;
}  // namespace

Serial::Serial(Output output, RaiseIrq raise_irq, Notify rx_space)
    : output_(std::move(output)),
      raise_irq_(std::move(raise_irq)),
      rx_space_(std::move(rx_space)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  data[0] = read_register(offset);
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  write_register(offset, data[0]);
}

bool Serial::loopback() const {
  return mcr_ & kMcrLoop;
}

void Serial::pull_input() {
  if (!(ier_ & kIerRxData) || loopback() || input_.empty()) return;
  const size_t n = std::min(kFifoSize - std::min(kFifoSize, fifo_.size()), input_.size());
  if (n == 0) return;
  fifo_.insert(fifo_.end(), input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
  input_.erase(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
  if (rx_was_full_) {
    rx_was_full_ = false;
    if (rx_space_) rx_space_();
  }
}

// Data the guest can get now: the FIFO, or host input the next look will pull in.
bool Serial::rx_available() const {
  return !fifo_.empty() || ((ier_ & kIerRxData) && !loopback() && !input_.empty());
}

uint8_t Serial::interrupt_identification() const {
  if ((ier_ & kIerRxData) && rx_available()) return kIirRxData;
  if ((ier_ & kIerThrEmpty) && thre_pending_) return kIirThrEmpty;
  return kIirNone;
}

void Serial::update_interrupt(bool new_event) {
  // The line is edge-triggered through an irqfd: signal each new interrupt condition.
  if (new_event && interrupt_identification() != kIirNone) raise_irq_();
}

uint8_t Serial::read_register(uint64_t offset) {
  switch (offset) {
    case kData: {
      if (lcr_ & kLcrDlab) return dll_;
      pull_input();
      if (fifo_.empty()) return 0;
      const uint8_t byte = fifo_.front();
      fifo_.pop_front();
      // More data still waiting: tell the guest again.
      update_interrupt(rx_available());
      return byte;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
      pull_input();
      const uint8_t iir = interrupt_identification();
      if (iir == kIirThrEmpty) thre_pending_ = false;  // reading IIR acknowledges THRE
      return iir | ((fcr_ & 0x01) ? kIirFifoEnabled : 0);
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      pull_input();
      return (tx_fifo_.empty() ? kLsrThrEmpty | kLsrIdle : 0) | (fifo_.empty() ? 0 : kLsrDataReady);
    case kMsr:
      if (loopback()) {
        // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
      return scr_;
    default:
      return 0;
  }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      if (loopback()) {
        if (fifo_.size() < kFifoSize) fifo_.push_back(value);
      } else if (tx_fifo_.empty()) {
        if (output_ && output_(std::span(&value, 1)) == 0) tx_fifo_.push_back(value);
      } else if (tx_fifo_.size() < kFifoSize) {
        tx_fifo_.push_back(value);  // the sink is full: wait for tx_space()
      }
      // Transmission is instant unless the sink pushes back: the holding register is empty.
      if (tx_fifo_.empty()) {
        thre_pending_ = true;
        update_interrupt(true);
      }
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      {
        const bool thre_enabled_now = (value & kIerThrEmpty) && !(ier_ & kIerThrEmpty);
        ier_ = value & 0x0f;
        if (thre_enabled_now && tx_fifo_.empty()) thre_pending_ = true;
        update_interrupt(true);
      }
      return;
    case kIir:
      fcr_ = value;
      // FCR: clear the receive FIFO - what the guest was shown, not the host input still
      // waiting for it.
      if (value & 0x02) fifo_.clear();
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      const bool was_loopback = loopback();
      mcr_ = value & 0x1f;
      if (was_loopback && !loopback()) update_interrupt(true);  // waiting input is live again
    }
      return;
    case kScr:
      scr_ = value;
      return;
    default:
      return;  // LSR and MSR are read-only
  }
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  const size_t n = std::min(bytes.size(), kInputCapacity - input_.size());
  // Full now or refusing bytes: the caller waits for rx_space, which comes with the next room.
  if (n < bytes.size() || input_.size() + n == kInputCapacity) rx_was_full_ = true;
  if (n == 0) return 0;
  const bool was_available = rx_available();
  input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  update_interrupt(!was_available);
  return n;
}

void Serial::tx_space() {
  std::lock_guard lock(mutex_);
  if (tx_fifo_.empty()) return;
  while (!tx_fifo_.empty()) {
    const uint8_t byte = tx_fifo_.front();
    if (output_(std::span(&byte, 1)) == 0) return;  // still full: the sink calls again
    tx_fifo_.pop_front();
  }
  thre_pending_ = true;
  update_interrupt(true);
}

size_t Serial::rx_room() const {
  std::lock_guard lock(mutex_);
  return kInputCapacity - input_.size();
}

}  // namespace kiln
