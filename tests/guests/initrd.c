#include "runtime/rt.h"

void guest_main(const struct boot_params *bp) {
    u64 addr = bp->hdr.ramdisk_image | ((u64)bp->ext_ramdisk_image << 32);
    u64 size = bp->hdr.ramdisk_size | ((u64)bp->ext_ramdisk_size << 32);
    if (size == 0) {
        serial_puts("INITRD none\n");
        reset();
    }
    if (addr + size > (4ull << 30) || addr + size < addr) { /* only the first 4 GiB are mapped */
        serial_puts("INITRD bad addr=0x");
        serial_put_hex(addr, 16);
        serial_puts(" size=");
        serial_put_dec(size);
        serial_putc('\n');
        reset();
    }
    const volatile u8 *p = (const volatile u8 *)addr;
    u64 h = 0xcbf29ce484222325ull;
    for (u64 i = 0; i < size; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    serial_puts("INITRD addr=0x");
    serial_put_hex_min(addr);
    serial_puts(" size=");
    serial_put_dec(size);
    serial_puts(" fnv1a64=");
    serial_put_hex(h, 16);
    serial_putc('\n');
    reset();
}
