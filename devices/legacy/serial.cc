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

uint8_t Serial::interrupt_identification() const {
  if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
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
      if (rx_.empty()) return 0;
      const uint8_t byte = rx_.front();
      rx_.pop_front();
      if (rx_was_full_) {
        rx_was_full_ = false;
        if (rx_space_) rx_space_();
      }
      // More data still waiting: tell the guest again.
      update_interrupt(!rx_.empty());
      return byte;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
      const uint8_t iir = interrupt_identification();
      if (iir == kIirThrEmpty) thre_pending_ = false;  // reading IIR acknowledges THRE
      return iir | ((fcr_ & 0x01) ? kIirFifoEnabled : 0);
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return kLsrThrEmpty | kLsrIdle | (rx_.empty() ? 0 : kLsrDataReady);
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
        if (rx_.size() < kRxCapacity) rx_.push_back(value);
      } else {
        output_(std::span(&value, 1));
      }
      // Transmission is instant: the holding register is empty again.
      thre_pending_ = true;
      update_interrupt(true);
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      {
        const bool thre_enabled_now = (value & kIerThrEmpty) && !(ier_ & kIerThrEmpty);
        ier_ = value & 0x0f;
        if (thre_enabled_now) thre_pending_ = true;  // THR is always empty here
        update_interrupt(true);
      }
      return;
    case kIir:
      fcr_ = value;
      if (value & 0x02) rx_.clear();  // FCR: clear receive FIFO
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr:
      mcr_ = value & 0x1f;
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
  const size_t n = std::min(bytes.size(), kRxCapacity - rx_.size());
  if (n < bytes.size()) rx_was_full_ = true;
  if (n == 0) return 0;
  const bool was_empty = rx_.empty();
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  update_interrupt(was_empty);
  return n;
}

size_t Serial::rx_room() const {
  std::lock_guard lock(mutex_);
  return kRxCapacity - rx_.size();
}

}  // namespace kiln
