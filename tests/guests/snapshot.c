#include "runtime/rt.h"

/* State that a snapshot must carry: a 4 MiB pattern in memory (checked at the end), a line
 * counter, and the PIT ticking at 1 kHz. Prints `SNAP n=<seq> ticks=<ticks>` every 100 ticks
 * for seq 1..40, each line after rewriting its own 4 KiB slice of the pattern (so pages change
 * after any snapshot), then `SNAP memory ok` (or `SNAP memory bad at <index>`) and
 * `SNAP done`. */

const int guest_enable_interrupts = 1;

#define PATTERN_WORDS (512u * 1024u) /* 4 MiB of u64 */
static u64 pattern[PATTERN_WORDS];

static u64 mix(u64 x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

#define SLICE_WORDS 512u /* 4 KiB */
#define LINES 40u
static u32 slice_base(u64 seq) { return (u32)(seq * 3u * SLICE_WORDS); }
/* What word `j` holds once every line ran. */
static u64 expected(u32 j) {
    u64 seq = j / (3u * SLICE_WORDS);
    if (seq >= 1 && seq <= LINES && j < slice_base(seq) + SLICE_WORDS) return mix(j + seq * 1000003u);
    return mix(j + 1);
}

void guest_main(const struct boot_params *bp) {
    (void)bp;
    u32 i;
    for (i = 0; i < PATTERN_WORDS; i++) pattern[i] = mix(i + 1);
    const u16 divisor = 1193; /* ~1 kHz */
    outb(0x43, 0x34);
    outb(0x40, divisor & 0xff);
    outb(0x40, divisor >> 8);
    pic_unmask(0);
    serial_puts("SNAP ready\n");

    u64 next = 100;
    u64 seq;
    for (seq = 1; seq <= LINES; seq++) {
        while (rt_ticks < next) cpu_relax();
        u32 base = slice_base(seq);
        for (i = 0; i < SLICE_WORDS; i++) pattern[base + i] = mix(base + i + seq * 1000003u);
        serial_puts("SNAP n=");
        serial_put_dec(seq);
        serial_puts(" ticks=");
        serial_put_dec(rt_ticks);
        serial_putc('\n');
        next += 100;
    }
    for (i = 0; i < PATTERN_WORDS; i++) {
        if (pattern[i] != expected(i)) {
            serial_puts("SNAP memory bad at ");
            serial_put_dec(i);
            serial_putc('\n');
            reset();
        }
    }
    serial_puts("SNAP memory ok\nSNAP done\n");
    reset();
}
