#include "devices/legacy/serial.h"

#include "base/error.h"
#include "base/snapshot/bytes.h"

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

namespace {
constexpr uint16_t kStateVersion = 1;

void put_bytes(snapshot::ByteWriter& w, const std::deque<uint8_t>& q) {
  w.blob(std::string(q.begin(), q.end()));
}

std::deque<uint8_t> get_bytes(snapshot::ByteReader& r, size_t max) {
  std::string b = r.blob(max);
  return {b.begin(), b.end()};
}
}  // namespace

std::vector<uint8_t> Serial::save() const {
  std::lock_guard lock(mutex_);
  snapshot::ByteWriter w;
  w.u16(kStateVersion);
  for (uint8_t reg : {ier_, lcr_, mcr_, scr_, dll_, dlm_, fcr_}) w.u8(reg);
  w.u8(static_cast<uint8_t>((thre_pending_ ? 1 : 0) | (rx_was_full_ ? 2 : 0)));
  put_bytes(w, fifo_);
  put_bytes(w, tx_fifo_);
  put_bytes(w, input_);
  return w.take();
}

void Serial::restore(std::span<const uint8_t> state) {
  snapshot::ByteReader r(state.data(), state.size(), "serial state");
  r.expect_version(kStateVersion);
  uint8_t regs[7];
  for (uint8_t& reg : regs) reg = r.u8();
  uint8_t flags = r.u8();
  if (flags > 3 || (regs[0] & ~0x0f) || (regs[2] & ~0x1f))  // bits the registers never hold
    throw kiln::Error("serial state: a register or flag holds a value the UART never has");
  std::deque<uint8_t> fifo = get_bytes(r, kFifoSize), tx = get_bytes(r, kFifoSize),
                      input = get_bytes(r, kInputCapacity);
  r.finish();
  std::lock_guard lock(mutex_);
  ier_ = regs[0];
  lcr_ = regs[1];
  mcr_ = regs[2];
  scr_ = regs[3];
  dll_ = regs[4];
  dlm_ = regs[5];
  fcr_ = regs[6];
  thre_pending_ = flags & 1;
  rx_was_full_ = flags & 2;
  fifo_ = std::move(fifo);
  tx_fifo_ = std::move(tx);
  input_ = std::move(input);
}

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
