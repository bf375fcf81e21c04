/* virtio-rng guest: finds the entropy device, reads RNG_TOTAL bytes (from the command line,
 * "rng_total=N", default 4096) in 1 KiB requests and prints the first 32 bytes, how many
 * distinct byte values it saw and how many requests came back short or empty. */
#include "runtime/rt.h"
#include "runtime/virtio.h"

const int guest_enable_interrupts = 1;

static u64 cmdline_u64(const struct boot_params *bp, const char *key, u64 dflt) {
    const char *p = (const char *)(u64)bp->hdr.cmd_line_ptr;
    size_t klen = strlen(key);
    for (size_t i = 0; p[i]; i++) {
        if ((i == 0 || p[i - 1] == ' ') && !memcmp(p + i, key, klen)) {
            u64 v = 0;
            for (const char *q = p + i + klen; *q >= '0' && *q <= '9'; q++) v = v * 10 + (u64)(*q - '0');
            return v;
        }
    }
    return dflt;
}

void guest_main(const struct boot_params *bp) {
    struct vio_dev dev;
    struct vio_queue q;
    if (!vio_find(bp, VIO_ID_RNG, 0, &dev)) {
        serial_puts("RNG no device\n");
        return;
    }
    if (!vio_negotiate(&dev, VIO_F_VERSION_1) || !vio_queue_setup(&q, &dev, 0, 16)) {
        serial_puts("RNG setup failed\n");
        return;
    }
    vio_driver_ok(&dev);
    pic_unmask((int)dev.irq);

    const u64 total = cmdline_u64(bp, "rng_total=", 4096);
    u8 *buf = vio_alloc(1024, 64);
    static u8 first[32];
    static u8 seen[256];
    u64 got = 0, short_reads = 0, requests = 0;
    while (got < total) {
        const u32 want = total - got < 1024 ? (u32)(total - got) : 1024;
        struct vio_buf b = {buf, want, 1};
        vio_add(&q, &b, 1);
        vio_kick(&q);
        u32 len = 0;
        if (vio_wait_used(&q, &len, VIO_SPIN_FOREVER) < 0) break;
        requests++;
        if (len < want) short_reads++;
        for (u32 i = 0; i < len; i++) {
            if (got + i < sizeof(first)) first[got + i] = buf[i];
            seen[buf[i]] = 1;
        }
        got += len;
    }
    u64 distinct = 0;
    for (int i = 0; i < 256; i++) distinct += seen[i];
    serial_puts("RNG first=");
    serial_put_hexbytes(first, sizeof(first));
    serial_puts(" bytes=");
    serial_put_dec(got);
    serial_puts(" distinct=");
    serial_put_dec(distinct);
    serial_puts(" requests=");
    serial_put_dec(requests);
    serial_puts(" short=");
    serial_put_dec(short_reads);
    serial_puts(" irqs=");
    serial_put_dec(rt_irq_count[dev.irq]);
    serial_puts("\n");
}
