// Plays a guest's 8250 driver against kiln::Serial through its port registers: the register
// sequence Linux's 8250 driver runs when it probes and opens the port, and its receive loop.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "devices/legacy/serial.h"

namespace kiln::testsupport {

class UartGuest {
 public:
  explicit UartGuest(Serial& serial) : s_(serial) {}
  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    s_.read(reg, std::span(&v, 1));
    return v;
  }
  void out(uint64_t reg, uint8_t v) { s_.write(reg, std::span(&v, 1)); }

  // serial8250 autoconfig + serial8250_do_startup + set_termios, in order: FIFO clears, the
  // discarding reads of LSR/RBR/IIR/MSR, the IER and loopback probes, the THRE test, and only
  // then the receive interrupt and the FIFO enable.
  void linux_probe_and_open() {
    out(1, 0x00);
    out(1, 0x0f);  // autoconfig: does IER hold bits?
    (void)in(1);
    out(1, 0x00);
    out(4, 0x1a);  // loopback probe
    (void)in(6);
    out(4, 0x08);
    out(2, 0x07);  // FIFO enable + clear both
    (void)in(2);
    out(2, 0x00);
    out(2, 0x06);  // serial8250_clear_fifos
    out(2, 0x00);
    discard_reads();
    out(3, 0x03);  // LCR: 8N1
    out(4, 0x0b);  // DTR | RTS | OUT2
    out(1, 0x02);  // THRE test
    (void)in(5);
    (void)in(2);
    out(1, 0x00);
    discard_reads();  // "again for luck"
    out(1, 0x05);     // IER: RLSI | RDI - the port is open
    out(2, 0xc1);     // set_termios: FIFO on, trigger level 14
  }
  // What the interrupt handler reads: IIR, then RBR while LSR says data ready.
  std::string receive() {
    std::string got;
    (void)in(2);
    while (in(5) & 0x01) got.push_back(static_cast<char>(in(0)));
    return got;
  }

 private:
  void discard_reads() {
    (void)in(5);
    (void)in(0);
    (void)in(2);
    (void)in(6);
  }
  Serial& s_;
};

}  // namespace kiln::testsupport
