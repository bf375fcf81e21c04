#include "runtime/rt.h"

#define ITERATIONS 100000000ull

void guest_main(const struct boot_params *bp) {
    (void)bp;
    u16 cpl = read_cs() & 3;
    if (cpl != 3) {
        serial_puts("RING3 wrong cpl=");
        serial_put_dec(cpl);
        serial_putc('\n');
        reset();
    }
    u64 n = ITERATIONS;
    __asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
    if (n != 0) {
        serial_puts("RING3 loop failed\n");
        reset();
    }
    serial_puts("RING3 cpl=");
    serial_put_dec(cpl);
    serial_puts(" iterations=");
    serial_put_dec(ITERATIONS);
    serial_puts(" done\n");
    reset();
}
