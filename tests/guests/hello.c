#include "runtime/rt.h"

void guest_main(const struct boot_params *bp) {
    (void)bp;
    serial_puts("KILN-GUEST hello\n");
    serial_puts("Hello from a Kiln test guest\n");
    reset();
}
