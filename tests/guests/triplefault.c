#include "runtime/rt.h"

/* Runs in ring 0 before the drop to ring 3: announce, then triple-fault. */
void guest_ring0_hook(const struct boot_params *bp) {
    (void)bp;
    serial_puts("TRIPLEFAULT now\n");
    struct __attribute__((packed)) { u16 limit; u64 base; } empty = {0, 0};
    /* #UD cannot be delivered through an empty IDT -> #GP -> #DF -> triple fault. */
    __asm__ volatile("lidt %0\n\tud2" : : "m"(empty) : "memory");
    for (;;) __asm__ volatile("hlt");
}

void guest_main(const struct boot_params *bp) {
    (void)bp;
    serial_puts("TRIPLEFAULT survived\n"); /* must never be reached */
    reset();
}
