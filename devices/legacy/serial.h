// 8250/16550A UART (COM1 at 0x3f8, IRQ 4): transmit to an output sink, receive from a FIFO
// the console feeds, interrupts for received data and transmitter empty.
//
// Receive path: host input waits in a host-side buffer (kInputCapacity) and reaches the guest's
// 16-byte receive FIFO only while the guest listens - IER has "received data available" set -
// and only when the guest looks (reads RBR, LSR or IIR). Linux clears the FIFO and reads RBR
// to discard garbage before it enables that interrupt, so input typed (or piped) before the
// driver opened the port is not lost: it is handed over once the port is open.
//
// Transmit path: bytes go to the output sink at once; when it is full (a stalled stdout) they
// wait in a 16-byte transmit FIFO and LSR reports the transmitter busy until tx_space(), so a
// driver that honours THRE waits instead of Kiln blocking a vCPU. Bytes written into a full
// FIFO are lost (an overrun, as on hardware).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "base/bus.h"
#include "base/snapshottable.h"
#include "devices/console_input.h"

namespace kiln {

class Serial : public BusDevice, public ConsoleInput, public Snapshottable {
 public:
  // Takes what the host console can take now (0: full; it calls tx_space() once it has room).
  using Output = std::function<size_t(std::span<const uint8_t>)>;
  using RaiseIrq = std::function<void()>;
  using Notify = std::function<void()>;
  static constexpr uint16_t kCom1Port = 0x3f8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kFifoSize = 16;
  static constexpr size_t kInputCapacity = 4096;

  // `rx_space` (optional) is called (on the vCPU thread, under the UART's lock: it must only
  // signal) once the guest frees room after the input buffer was full or refused input.
  Serial(Output output, RaiseIrq raise_irq, Notify rx_space = {});

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues host input for the guest. Returns how many bytes were accepted (the rest does not
  // fit in the input buffer; the caller keeps it and waits for rx_space).
  size_t enqueue_input(std::span<const uint8_t> bytes) override;
  size_t rx_room() const override;
  // The output sink has room again: transmit what waits in the transmit FIFO.
  void tx_space();

  // The registers, the FIFOs and the host input not yet taken (version 1).
  std::vector<uint8_t> save() const override;
  void restore(std::span<const uint8_t> state) override;

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  uint8_t interrupt_identification() const;
  void update_interrupt(bool new_event);
  bool loopback() const;
  // Moves waiting host input into the FIFO if the guest listens.
  void pull_input();
  bool rx_available() const;

  mutable std::mutex mutex_;
  Output output_;
  RaiseIrq raise_irq_;
  Notify rx_space_;
  bool rx_was_full_ = false;   // input_ filled up or refused bytes: call rx_space_ on room
  std::deque<uint8_t> input_;  // host input the guest has not seen yet
  std::deque<uint8_t> fifo_;   // the receive FIFO (at most kFifoSize)
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0x03;  // 8N1
  uint8_t mcr_ = 0x08;  // OUT2
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0c;  // 9600 baud
  uint8_t dlm_ = 0;
  uint8_t fcr_ = 0;
  std::deque<uint8_t> tx_fifo_;  // bytes the sink could not take yet (THR not empty)
  bool thre_pending_ = false;    // THR-empty interrupt not yet acknowledged by an IIR read
};

}  // namespace kiln
