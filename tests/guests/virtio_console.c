/* virtio-console guest: drives hvc0 with the runtime's virtio driver. Prints (through the
 * device, not the UART) the terminal size from config space and "HVC READY", reads one line of
 * host input from the receive queue and echoes it as "HVC GOT:<line>", then resets. It also
 * writes a line to the UART, which must not reach the console when virtio is the console. */
#include "runtime/rt.h"
#include "runtime/virtio.h"

#define F_SIZE (1ull << 0)

static struct vio_dev dev;
static struct vio_queue rxq, txq;

static void hvc_write(const char *s, u32 n) {
    char *buf = vio_alloc(n, 1); /* never freed: the guest prints a few lines */
    memcpy(buf, s, n);
    struct vio_buf b = {buf, n, 0};
    vio_add(&txq, &b, 1);
    vio_kick(&txq);
    u32 len;
    vio_wait_used(&txq, &len, VIO_SPIN_FOREVER);
}

static void hvc_puts(const char *s) {
    hvc_write(s, (u32)strlen(s));
}

static void hvc_put_dec(u64 v) {
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char out[24];
    for (int k = 0; k < i; k++) out[k] = tmp[i - 1 - k];
    hvc_write(out, (u32)i);
}

void guest_main(const struct boot_params *bp) {
    serial_puts("UART OUTPUT\n");
    if (!vio_find(bp, VIO_ID_CONSOLE, 0, &dev)) {
        serial_puts("HVC no device\n");
        return;
    }
    u64 f = vio_negotiate(&dev, VIO_F_VERSION_1 | F_SIZE);
    if (!f || !vio_queue_setup(&rxq, &dev, 0, 16) || !vio_queue_setup(&txq, &dev, 1, 16)) {
        serial_puts("HVC setup failed\n");
        return;
    }
    vio_driver_ok(&dev);
    hvc_puts("HVC size=");
    hvc_put_dec((f & F_SIZE) ? vio_config16(&dev, 0) : 0);
    hvc_puts("x");
    hvc_put_dec((f & F_SIZE) ? vio_config16(&dev, 2) : 0);
    hvc_puts("\n");

    static char line[256];
    u32 n = 0;
    u8 *rx = vio_alloc(64, 64);
    struct vio_buf b = {rx, 64, 1};
    vio_add(&rxq, &b, 1);
    vio_kick(&rxq);
    hvc_puts("HVC READY\n");
    for (;;) {
        u32 len = 0;
        vio_wait_used(&rxq, &len, VIO_SPIN_FOREVER);
        int done = 0;
        for (u32 i = 0; i < len && !done; i++) {
            if (rx[i] == '\n' || rx[i] == '\r') done = 1;
            else if (n < sizeof(line)) line[n++] = (char)rx[i];
        }
        if (done) break;
        vio_add(&rxq, &b, 1);
        vio_kick(&rxq);
    }
    hvc_puts("HVC GOT:");
    hvc_write(line, n);
    hvc_puts("\n");
}
