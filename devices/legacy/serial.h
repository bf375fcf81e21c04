// 8250/16550A UART (COM1 at 0x3f8, IRQ 4): transmit to an output sink, receive from a FIFO
// the console feeds, interrupts for received data and transmitter empty.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/console_input.h"
#include "vmm/bus.h"

namespace kiln {

class Serial : public BusDevice, public ConsoleInput {
 public:
  using Output = std::function<void(std::span<const uint8_t>)>;
  using RaiseIrq = std::function<void()>;
  using Notify = std::function<void()>;
  static constexpr uint16_t kCom1Port = 0x3f8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kRxCapacity = 64 * 1024;

  // `rx_space` (optional) is called when the guest frees receive-buffer room after
  // enqueue_input() could not take everything: the console resumes reading its input then.
  Serial(Output output, RaiseIrq raise_irq, Notify rx_space = {});

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues host input for the guest. Returns how many bytes were accepted (the rest does not
  // fit in the receive buffer; the caller keeps it).
  size_t enqueue_input(std::span<const uint8_t> bytes) override;
  size_t rx_room() const override;

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  uint8_t interrupt_identification() const;
  void update_interrupt(bool new_event);
  bool loopback() const;

  mutable std::mutex mutex_;
  Output output_;
  RaiseIrq raise_irq_;
  Notify rx_space_;
  bool rx_was_full_ = false;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0x03;  // 8N1
  uint8_t mcr_ = 0x08;  // OUT2
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0c;  // 9600 baud
  uint8_t dlm_ = 0;
  uint8_t fcr_ = 0;
  bool thre_pending_ = false;  // THR-empty interrupt not yet acknowledged by an IIR read
};

}  // namespace kiln
