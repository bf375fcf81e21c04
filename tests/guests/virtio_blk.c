/*
 * Minimal virtio-mmio (virtio 1.x, register layout version 2) block driver, all in ring 3.
 *
 * Devices come from `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` on the kernel command line
 * (parsed like Linux: size with memparse, base/irq like sscanf "@%lli:%u"), numbered in
 * command-line order, at most VBLK_MAX_DEVS. One split virtqueue of QSZ entries per device, one
 * request in flight at a time (descriptors 0 header, 1 data, 2 status). The device interrupt is
 * taken through the 8259 PIC (rt_irq_count[irq]); the first completion of every device must be
 * signalled by it. Output format: see README.md.
 */
#include "runtime/rt.h"
#include "runtime/virtio.h"

const int guest_enable_interrupts = 1; /* ring 3 runs with IF=1; all PIC lines start masked */

#define VBLK_MAX_DEVS 4
#define QSZ 16
#define SPIN_LIMIT (1ull << 32)
#define MEM_LIMIT (1ull << 32) /* only the first 4 GiB are identity mapped */

/* virtio-mmio registers (all 32-bit). */
#define VM_MAGIC 0x000
#define VM_VERSION 0x004
#define VM_DEVICE_ID 0x008
#define VM_DEVICE_FEATURES 0x010
#define VM_DEVICE_FEATURES_SEL 0x014
#define VM_DRIVER_FEATURES 0x020
#define VM_DRIVER_FEATURES_SEL 0x024
#define VM_QUEUE_SEL 0x030
#define VM_QUEUE_NUM_MAX 0x034
#define VM_QUEUE_NUM 0x038
#define VM_QUEUE_READY 0x044
#define VM_QUEUE_NOTIFY 0x050
#define VM_INTERRUPT_STATUS 0x060
#define VM_INTERRUPT_ACK 0x064
#define VM_STATUS 0x070
#define VM_QUEUE_DESC_LOW 0x080
#define VM_QUEUE_DESC_HIGH 0x084
#define VM_QUEUE_DRIVER_LOW 0x090
#define VM_QUEUE_DRIVER_HIGH 0x094
#define VM_QUEUE_DEVICE_LOW 0x0a0
#define VM_QUEUE_DEVICE_HIGH 0x0a4
#define VM_CONFIG_GENERATION 0x0fc
#define VM_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976u /* "virt" */

#define ST_ACKNOWLEDGE 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_FAILED 128u

#define F_BLK_SEG_MAX (1ull << 2)
#define F_BLK_RO (1ull << 5)
#define F_BLK_BLK_SIZE (1ull << 6)
#define F_BLK_FLUSH (1ull << 9)
#define F_VERSION_1 (1ull << 32)
#define F_ACCEPTED (F_VERSION_1 | F_BLK_RO | F_BLK_FLUSH | F_BLK_SEG_MAX | F_BLK_BLK_SIZE)

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_ID_BYTES 20

#define barrier() __asm__ volatile("" ::: "memory")
#define VOL(x) (*(volatile __typeof__(x) *)&(x))

struct vring_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

struct vring_avail {
    u16 flags;
    u16 idx;
    u16 ring[QSZ];
    u16 used_event;
};

struct vring_used_elem {
    u32 id;
    u32 len;
};

struct vring_used {
    u16 flags;
    u16 idx;
    struct vring_used_elem ring[QSZ];
    u16 avail_event;
};

struct blk_req_hdr {
    u32 type;
    u32 reserved;
    u64 sector;
};

/* Per-device DMA memory (in .bss; identity mapped, so virtual == physical). */
struct vblk_mem {
    struct vring_desc desc[QSZ] __attribute__((aligned(4096))); /* needs 16 */
    struct vring_avail avail __attribute__((aligned(64)));     /* needs 2 */
    struct vring_used used __attribute__((aligned(64)));       /* needs 4 */
    struct blk_req_hdr hdr __attribute__((aligned(64)));
    u8 status __attribute__((aligned(64)));
    u8 id[BLK_ID_BYTES + 4] __attribute__((aligned(64)));
    u8 rbuf[4096] __attribute__((aligned(4096)));
    u8 wbuf[4096] __attribute__((aligned(4096)));
};

static struct vblk_mem vblk_mem[VBLK_MAX_DEVS];

struct vblk_dev {
    int index;
    u64 size, base;
    u32 irq;
    struct vblk_mem *m;
    u16 avail_idx;  /* next free avail slot (free-running) */
    u16 used_seen;  /* used.idx consumed so far (free-running) */
    int irq_checked; /* first completion already matched with an interrupt */
    int bad_param;   /* the command-line entry did not parse */
};

static inline u32 mmio_r32(const struct vblk_dev *d, u32 off) {
    return *(volatile u32 *)(d->base + off);
}
static inline void mmio_w32(const struct vblk_dev *d, u32 off, u32 v) {
    *(volatile u32 *)(d->base + off) = v;
}

static void put_dev(const struct vblk_dev *d) {
    serial_puts("VBLK dev=");
    serial_put_dec((u64)d->index);
    serial_putc(' ');
}

/* ------------------------------------------------------------------ command line */

/* ------------------------------------------------------------------ requests */

static void timeout(const struct vblk_dev *d, const char *op, const char *what) __attribute__((noreturn));
static void timeout(const struct vblk_dev *d, const char *op, const char *what) {
    serial_puts("VBLK timeout dev=");
    serial_put_dec((u64)d->index);
    serial_putc(' ');
    serial_puts(op);
    serial_putc(' ');
    serial_puts(what);
    serial_putc('\n');
    reset();
}

/* One request: header, optional data buffer, status byte. Returns the status byte. */
static u8 do_request(struct vblk_dev *d, const char *op, u32 type, u64 sector, void *data, u32 len,
                     int device_writes) {
    struct vblk_mem *m = d->m;
    m->hdr.type = type;
    m->hdr.reserved = 0;
    m->hdr.sector = sector;
    m->status = 0xff;
    m->desc[0].addr = (u64)&m->hdr;
    m->desc[0].len = sizeof(m->hdr);
    m->desc[0].flags = DESC_F_NEXT;
    m->desc[0].next = len ? 1 : 2;
    m->desc[1].addr = (u64)data;
    m->desc[1].len = len;
    m->desc[1].flags = DESC_F_NEXT | (device_writes ? DESC_F_WRITE : 0);
    m->desc[1].next = 2;
    m->desc[2].addr = (u64)&m->status;
    m->desc[2].len = 1;
    m->desc[2].flags = DESC_F_WRITE;
    m->desc[2].next = 0;

    u64 irqs_before = rt_irq_count[d->irq];
    VOL(m->avail.ring[d->avail_idx % QSZ]) = 0; /* head descriptor */
    barrier();
    d->avail_idx++;
    VOL(m->avail.idx) = d->avail_idx;
    barrier();
    mmio_w32(d, VM_QUEUE_NOTIFY, 0);

    u64 spins = 0;
    while (VOL(m->used.idx) == d->used_seen) {
        if (++spins >= SPIN_LIMIT) timeout(d, op, "used-ring");
    }
    barrier();
    d->used_seen = VOL(m->used.idx);

    if (!d->irq_checked) {
        spins = 0;
        while (rt_irq_count[d->irq] == irqs_before) {
            if (++spins >= SPIN_LIMIT) timeout(d, op, "irq");
        }
        u32 isr = mmio_r32(d, VM_INTERRUPT_STATUS);
        mmio_w32(d, VM_INTERRUPT_ACK, isr);
        if (!(isr & 1)) {
            put_dev(d);
            serial_puts("bad-interrupt-status=");
            serial_put_dec(isr);
            serial_putc('\n');
        }
        d->irq_checked = 1;
    } else {
        u32 isr = mmio_r32(d, VM_INTERRUPT_STATUS);
        if (isr) mmio_w32(d, VM_INTERRUPT_ACK, isr);
    }
    barrier();
    return VOL(m->status);
}

static void print_status(const struct vblk_dev *d, const char *what, u8 st) {
    put_dev(d);
    serial_puts(what);
    serial_puts(" status=");
    serial_put_dec(st);
    serial_putc('\n');
}

static u64 fnv1a64(const u8 *p, u32 n) {
    u64 h = 0xcbf29ce484222325ull;
    for (u32 i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ------------------------------------------------------------------ device */

static void fail(struct vblk_dev *d, const char *what, u64 v, int hex) {
    mmio_w32(d, VM_STATUS, mmio_r32(d, VM_STATUS) | ST_FAILED);
    put_dev(d);
    serial_puts(what);
    if (hex) {
        serial_puts("0x");
        serial_put_hex(v, 16);
    } else {
        serial_put_dec(v);
    }
    serial_putc('\n');
}

static void run_device(struct vblk_dev *d) {
    if (d->irq >= 16) {
        put_dev(d);
        serial_puts("bad-irq=");
        serial_put_dec(d->irq);
        serial_putc('\n');
        return;
    }
    if (d->base == 0 || d->base >= MEM_LIMIT || d->base + 0x200 > MEM_LIMIT || (d->base & 3)) {
        put_dev(d);
        serial_puts("bad-base=0x");
        serial_put_hex_min(d->base);
        serial_putc('\n');
        return;
    }
    u32 magic = mmio_r32(d, VM_MAGIC);
    if (magic != VIRTIO_MAGIC) {
        put_dev(d);
        serial_puts("bad-magic=0x");
        serial_put_hex(magic, 8);
        serial_putc('\n');
        return;
    }
    u32 version = mmio_r32(d, VM_VERSION);
    u32 devid = mmio_r32(d, VM_DEVICE_ID);
    if (version != 2 || devid != 2) {
        put_dev(d);
        serial_puts("id=");
        serial_put_dec(devid);
        serial_puts(" version=");
        serial_put_dec(version);
        serial_puts(" unsupported\n");
        return;
    }

    /* Reset, ACKNOWLEDGE, DRIVER, features. */
    mmio_w32(d, VM_STATUS, 0);
    (void)mmio_r32(d, VM_STATUS);
    mmio_w32(d, VM_STATUS, ST_ACKNOWLEDGE);
    mmio_w32(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
    mmio_w32(d, VM_DEVICE_FEATURES_SEL, 0);
    u64 features = mmio_r32(d, VM_DEVICE_FEATURES);
    mmio_w32(d, VM_DEVICE_FEATURES_SEL, 1);
    features |= (u64)mmio_r32(d, VM_DEVICE_FEATURES) << 32;
    if (!(features & F_VERSION_1)) {
        fail(d, "no-version-1 features=", features, 1);
        return;
    }
    u64 accepted = features & F_ACCEPTED;
    mmio_w32(d, VM_DRIVER_FEATURES_SEL, 0);
    mmio_w32(d, VM_DRIVER_FEATURES, (u32)accepted);
    mmio_w32(d, VM_DRIVER_FEATURES_SEL, 1);
    mmio_w32(d, VM_DRIVER_FEATURES, (u32)(accepted >> 32));
    mmio_w32(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
    u32 st = mmio_r32(d, VM_STATUS);
    if (!(st & ST_FEATURES_OK)) {
        fail(d, "features-not-ok status=", st, 0);
        return;
    }

    /* Queue 0. */
    struct vblk_mem *m = d->m;
    memset(m, 0, sizeof(*m)); /* fresh rings even if .bss was not zeroed */
    barrier();
    mmio_w32(d, VM_QUEUE_SEL, 0);
    if (mmio_r32(d, VM_QUEUE_READY) != 0) {
        fail(d, "queue-already-ready status=", mmio_r32(d, VM_STATUS), 0);
        return;
    }
    u32 qmax = mmio_r32(d, VM_QUEUE_NUM_MAX);
    if (qmax < QSZ) {
        fail(d, "queue-num-max=", qmax, 0);
        return;
    }
    mmio_w32(d, VM_QUEUE_NUM, QSZ);
    u64 a = (u64)m->desc;
    mmio_w32(d, VM_QUEUE_DESC_LOW, (u32)a);
    mmio_w32(d, VM_QUEUE_DESC_HIGH, (u32)(a >> 32));
    a = (u64)&m->avail;
    mmio_w32(d, VM_QUEUE_DRIVER_LOW, (u32)a);
    mmio_w32(d, VM_QUEUE_DRIVER_HIGH, (u32)(a >> 32));
    a = (u64)&m->used;
    mmio_w32(d, VM_QUEUE_DEVICE_LOW, (u32)a);
    mmio_w32(d, VM_QUEUE_DEVICE_HIGH, (u32)(a >> 32));
    mmio_w32(d, VM_QUEUE_READY, 1);
    if (mmio_r32(d, VM_QUEUE_READY) != 1) {
        fail(d, "queue-not-ready status=", mmio_r32(d, VM_STATUS), 0);
        return;
    }

    /* Capacity (u64 as two aligned 32-bit reads, stable across ConfigGeneration). */
    u64 capacity = 0;
    for (int tries = 0; tries < 1000; tries++) {
        u32 gen = mmio_r32(d, VM_CONFIG_GENERATION);
        u32 lo = mmio_r32(d, VM_CONFIG + 0);
        u32 hi = mmio_r32(d, VM_CONFIG + 4);
        capacity = lo | ((u64)hi << 32);
        if (mmio_r32(d, VM_CONFIG_GENERATION) == gen) break;
    }
    int ro = (accepted & F_BLK_RO) != 0;

    pic_unmask((int)d->irq);
    mmio_w32(d, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    st = mmio_r32(d, VM_STATUS);
    if (st != (ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK)) { /* e.g. NEEDS_RESET */
        fail(d, "driver-ok-rejected status=", st, 0);
        return;
    }

    put_dev(d);
    serial_puts("id=");
    serial_put_dec(devid);
    serial_puts(" version=");
    serial_put_dec(version);
    serial_puts(" capacity=");
    serial_put_dec(capacity);
    serial_puts(" ro=");
    serial_put_dec((u64)ro);
    serial_puts(" irq=");
    serial_put_dec(d->irq);
    serial_putc('\n');

    /* GET_ID */
    u8 s = do_request(d, "get-id", BLK_T_GET_ID, 0, m->id, BLK_ID_BYTES, 1);
    put_dev(d);
    if (s == 0) {
        u32 n = 0;
        while (n < BLK_ID_BYTES && m->id[n]) n++;
        serial_puts("serial=");
        serial_write(m->id, n);
    } else {
        serial_puts("serial-status=");
        serial_put_dec(s);
    }
    serial_putc('\n');

    /* Read sectors 0..7. */
    s = do_request(d, "read", BLK_T_IN, 0, m->rbuf, 4096, 1);
    put_dev(d);
    serial_puts("read status=");
    serial_put_dec(s);
    serial_puts(" fnv1a64=");
    serial_put_hex(fnv1a64(m->rbuf, 4096), 16);
    serial_putc('\n');

    /* Write pattern to sectors 8..15. */
    for (u32 k = 0; k < 4096; k++) m->wbuf[k] = (u8)(k * 7 + (u32)d->index);
    {
        static const char tag[] = "KILN-WRITE-DEV-";
        char text[32];
        u32 n = 0;
        for (; tag[n]; n++) text[n] = tag[n];
        u64 v = (u64)d->index, div = 1;
        while (v / div >= 10) div *= 10;
        for (; div; div /= 10) text[n++] = (char)('0' + (v / div) % 10);
        for (u32 k = 0; k < 16; k++) m->wbuf[k] = k < n ? (u8)text[k] : 0;
    }
    if (!ro) {
        s = do_request(d, "write", BLK_T_OUT, 8, m->wbuf, 4096, 0);
        print_status(d, "write", s);
        s = do_request(d, "flush", BLK_T_FLUSH, 0, NULL, 0, 0);
        print_status(d, "flush", s);
        memset(m->rbuf, 0, 4096);
        barrier();
        s = do_request(d, "readback", BLK_T_IN, 8, m->rbuf, 4096, 1);
        int match = s == 0;
        for (u32 k = 0; k < 4096 && match; k++) match = m->rbuf[k] == m->wbuf[k];
        put_dev(d);
        serial_puts("readback match=");
        serial_put_dec((u64)match);
        serial_putc('\n');
    } else {
        s = do_request(d, "ro-write", BLK_T_OUT, 8, m->wbuf, 4096, 0);
        print_status(d, "ro-write", s);
    }

    /* One sector past the end. */
    s = do_request(d, "past-end", BLK_T_IN, capacity, m->rbuf, 512, 1);
    print_status(d, "past-end", s);

    put_dev(d);
    serial_puts("irqs=");
    serial_put_dec(rt_irq_count[d->irq]);
    serial_putc('\n');
}

void guest_main(const struct boot_params *bp) {
    static struct vblk_dev devs[VBLK_MAX_DEVS];
    struct vio_cmdline_entry entries[VBLK_MAX_DEVS];
    const int ndev = vio_cmdline_entries(bp, entries, VBLK_MAX_DEVS);
    for (int n = 0; n < ndev; n++) {
        struct vblk_dev *d = &devs[n];
        d->index = n;
        d->m = &vblk_mem[n];
        d->bad_param = !entries[n].ok;
        d->size = entries[n].size;
        d->base = entries[n].base;
        d->irq = entries[n].irq;
    }
    for (int n = 0; n < ndev; n++) {
        if (devs[n].bad_param) {
            put_dev(&devs[n]);
            serial_puts("bad-param\n");
        } else {
            run_device(&devs[n]);
        }
    }
    serial_puts("VBLK done devices=");
    serial_put_dec((u64)ndev);
    serial_putc('\n');
    reset();
}
