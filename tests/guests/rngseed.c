#include "runtime/rt.h"

#define LIMIT (1ull << 30) /* setup_data must lie in the first 1 GiB */

void guest_main(const struct boot_params *bp) {
    u64 pa = bp->hdr.setup_data;
    int found = 0;
    for (int guard = 0; pa != 0 && guard < 64; guard++) {
        if (pa >= LIMIT || pa + sizeof(struct setup_data) > LIMIT) {
            serial_puts("RNGSEED bad-pointer 0x");
            serial_put_hex(pa, 16);
            serial_putc('\n');
            reset();
        }
        const struct setup_data *sd = (const struct setup_data *)pa;
        if (pa + sizeof(*sd) + sd->len > LIMIT) {
            serial_puts("RNGSEED bad-length ");
            serial_put_dec(sd->len);
            serial_putc('\n');
            reset();
        }
        if (sd->type == SETUP_RNG_SEED) {
            serial_puts("RNGSEED len=");
            serial_put_dec(sd->len);
            serial_puts(" data=");
            serial_put_hexbytes(sd->data, sd->len);
            serial_putc('\n');
            found = 1;
        }
        pa = sd->next;
    }
    if (!found) serial_puts("RNGSEED none\n");
    reset();
}
