#include "runtime/rt.h"

void guest_main(const struct boot_params *bp) {
    u32 ptr = bp->hdr.cmd_line_ptr;
    u64 addr = ptr | ((u64)bp->ext_cmd_line_ptr << 32);
    serial_puts("CMDLINE:");
    if (addr != 0 && addr < (1ull << 30)) {
        const char *p = (const char *)addr;
        u32 max = bp->hdr.cmdline_size ? bp->hdr.cmdline_size : 2047;
        if (max > 65536) max = 65536;
        for (u32 i = 0; i < max && p[i]; i++) serial_putc(p[i]);
    }
    serial_putc('\n');
    reset();
}
