#include "runtime/rt.h"

/* Parks the vCPU in hlt for good (for the density benchmark, bench/vmm_bench.py). hlt is a
 * ring-0 instruction and ring 3 never executes it, so the park happens in the ring-0 hook, with
 * interrupts off (the runtime enters it with IF=0 and every PIC line masked): the vCPU stays
 * halted in the hypervisor and costs no host CPU. The line is printed first so the host knows
 * the guest got there; nothing after the hook runs. */
void guest_ring0_hook(const struct boot_params *bp) {
    (void)bp;
    serial_puts("KILN-GUEST idle\n");
    for (;;) __asm__ volatile("cli\n\thlt" ::: "memory");
}

void guest_main(const struct boot_params *bp) {
    (void)bp;
    serial_puts("IDLE not parked\n");
    reset();
}
