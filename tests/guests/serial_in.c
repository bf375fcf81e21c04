#include "runtime/rt.h"

const int guest_enable_interrupts = 1; /* ring 3 runs with IF=1; all PIC lines start masked */

void guest_main(const struct boot_params *bp) {
    (void)bp;
    outb(COM1 + 3, 0x03); /* LCR: 8N1, DLAB=0 */
    outb(COM1 + 4, 0x0b); /* MCR: DTR | RTS | OUT2 (OUT2 gates the IRQ line) */
    outb(COM1 + 1, 0x01); /* IER: received-data-available interrupt */
    pic_unmask(4);
    serial_puts("READY\n");

    static char line[256];
    u32 len = 0;
    u32 tail = 0;
    for (;;) {
        while (tail == rt_rx_head) cpu_relax();
        char c = (char)rt_rx_buf[tail & 255];
        tail++;
        if (c == '\n' || c == '\r') break;
        if (len < sizeof(line)) line[len++] = c;
    }
    serial_puts("GOT:");
    serial_write(line, len);
    serial_putc('\n');
    reset();
}
