#include "runtime/rt.h"

const int guest_enable_interrupts = 1; /* ring 3 runs with IF=1; all PIC lines start masked */

void guest_main(const struct boot_params *bp) {
    (void)bp;
    const u16 divisor = 1193; /* 1193182 Hz / 1193 ~= 1 kHz */
    outb(0x43, 0x34);         /* channel 0, lobyte/hibyte, mode 2 (rate generator), binary */
    outb(0x40, divisor & 0xff);
    outb(0x40, divisor >> 8);
    pic_unmask(0);

    u64 i;
    for (i = 0; i < (1ull << 34); i++) {
        if (rt_ticks >= 20) break; /* rt_ticks is volatile: re-read every iteration */
    }
    u64 n = rt_ticks;
    if (n < 20) {
        serial_puts("TIMER timeout ticks=");
        serial_put_dec(n);
        serial_putc('\n');
        reset();
    }
    serial_puts("TIMER ticks=");
    serial_put_dec(n);
    serial_putc('\n');
    reset();
}
