#include "runtime/rt.h"

void guest_main(const struct boot_params *bp) {
    u32 n = bp->e820_entries;
    if (n > E820_MAX_ENTRIES_ZEROPAGE) n = E820_MAX_ENTRIES_ZEROPAGE;
    for (u32 i = 0; i < n; i++) {
        const struct boot_e820_entry *e = &bp->e820_table[i];
        serial_puts("E820 0x");
        serial_put_hex(e->addr, 16);
        serial_puts(" 0x");
        serial_put_hex(e->size, 16);
        serial_putc(' ');
        serial_put_dec(e->type);
        serial_putc('\n');
    }
    serial_puts("E820-END ");
    serial_put_dec(bp->e820_entries);
    serial_putc('\n');
    reset();
}
