/* i8042 keyboard guest: probes the controller and the keyboard as a PC driver does, then waits
 * for the host's SendCtrlAltDel twice - first in scan code set 2, then with the controller's
 * translation on (set 1) - and prints every byte it reads from port 0x60 and how many IRQ 1
 * interrupts arrived. The e2e test (tests/e2e/api_test.cc) sends the keys through the API. */
#include "runtime/rt.h"

const int guest_enable_interrupts = 1;

#define KBD_DATA 0x60
#define KBD_STATUS 0x64

static int read_byte(u8* out, u64 spins) {
  for (u64 i = 0; i < spins; i++) {
    if (inb(KBD_STATUS) & 0x01) {
      *out = inb(KBD_DATA);
      return 1;
    }
    cpu_relax();
  }
  return 0;
}

/* Reads `n` bytes (waiting at most `spins` polls for each) and prints "<label>: xx xx ...". */
static void read_and_print(const char* label, int n, u64 spins) {
  serial_puts(label);
  serial_puts(":");
  for (int i = 0; i < n; i++) {
    u8 b = 0;
    if (!read_byte(&b, spins)) {
      serial_puts(" TIMEOUT");
      break;
    }
    serial_puts(" ");
    serial_put_hex(b, 2);
  }
  serial_puts("\n");
}

static void controller_command(u8 cmd) {
  outb(KBD_STATUS, cmd);
}

static void write_command_byte(u8 ctr) {
  outb(KBD_STATUS, 0x60);
  outb(KBD_DATA, ctr);
}

void guest_main(const struct boot_params* bp) {
  (void)bp;
  const u64 probe_spins = 10000000;
  pic_unmask(1);
  controller_command(0xaa);
  read_and_print("selftest", 1, probe_spins);
  controller_command(0x20);
  u8 ctr = 0;
  read_byte(&ctr, probe_spins);
  serial_puts("ctr: ");
  serial_put_hex(ctr, 2);
  serial_puts("\n");
  write_command_byte((u8)((ctr | 0x01) & ~0x50)); /* interrupt on, keyboard on, no translation */
  outb(KBD_DATA, 0xff);
  read_and_print("reset", 2, probe_spins);
  outb(KBD_DATA, 0xf2);
  read_and_print("identify", 3, probe_spins);
  outb(KBD_DATA, 0xf4);
  read_and_print("enable", 1, probe_spins);

  u64 irqs = rt_irq_count[1];
  serial_puts("KBD READY set2\n");
  read_and_print("keys set2", 11, ~0ull);
  serial_puts("irqs: ");
  serial_put_dec(rt_irq_count[1] - irqs);
  serial_puts("\n");

  write_command_byte((u8)((ctr | 0x41) & ~0x10)); /* translation on */
  irqs = rt_irq_count[1];
  serial_puts("KBD READY set1\n");
  read_and_print("keys set1", 8, ~0ull);
  serial_puts("irqs: ");
  serial_put_dec(rt_irq_count[1] - irqs);
  serial_puts("\n");
  reset();
}
