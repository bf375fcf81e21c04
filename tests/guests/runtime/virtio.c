/* Minimal virtio-mmio driver for test guests: see virtio.h. */
#include "virtio.h"

#define barrier() __asm__ volatile("" ::: "memory")

/* ------------------------------------------------------------------ memory pool */

static u8 vio_pool[4u << 20] __attribute__((aligned(4096)));
static size_t vio_pool_used;

void *vio_alloc(size_t bytes, size_t align) {
    size_t at = (vio_pool_used + align - 1) & ~(align - 1);
    if (at + bytes > sizeof(vio_pool)) {
        serial_puts("VIO out of pool memory\n");
        reset();
    }
    vio_pool_used = at + bytes;
    memset(&vio_pool[at], 0, bytes);
    return &vio_pool[at];
}

/* ------------------------------------------------------------------ command line */

static int is_digit_in_base(char c, unsigned b, unsigned *val) {
    unsigned v;
    if (c >= '0' && c <= '9')
        v = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
        v = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
        v = (unsigned)(c - 'A' + 10);
    else
        return 0;
    if (v >= b) return 0;
    *val = v;
    return 1;
}

/* strtoull(base 0) over s[*pos..end): 0x.. hex, 0.. octal, else decimal. 0 on failure/overflow. */
static int parse_u64(const char *s, u32 *pos, u32 end, u64 *out) {
    u32 i = *pos;
    unsigned b = 10, v;
    if (i < end && s[i] == '0') {
        if (i + 2 < end && (s[i + 1] == 'x' || s[i + 1] == 'X') && is_digit_in_base(s[i + 2], 16, &v)) {
            b = 16;
            i += 2;
        } else {
            b = 8;
        }
    }
    u64 x = 0;
    u32 start = i;
    while (i < end && is_digit_in_base(s[i], b, &v)) {
        if (x > (~0ull - v) / b) return 0;
        x = x * b + v;
        i++;
    }
    if (i == start) return 0;
    *out = x;
    *pos = i;
    return 1;
}

/* Parse "<size>@<base>:<irq>[:<id>]" (the value of one virtio_mmio.device= parameter). */
int vio_parse_mmio_param(const char *s, u32 end, u64 *size, u64 *base, u32 *irq) {
    u32 i = 0;
    u64 v;
    if (!parse_u64(s, &i, end, &v)) return 0;
    if (i < end) { /* memparse suffixes */
        unsigned shift = 0;
        switch (s[i]) {
        case 'E': case 'e': shift += 10; /* fall through */
        case 'P': case 'p': shift += 10; /* fall through */
        case 'T': case 't': shift += 10; /* fall through */
        case 'G': case 'g': shift += 10; /* fall through */
        case 'M': case 'm': shift += 10; /* fall through */
        case 'K': case 'k': shift += 10; i++; break;
        default: break;
        }
        if (shift && (v << shift) >> shift != v) return 0;
        v <<= shift;
    }
    *size = v;
    if (i >= end || s[i] != '@') return 0;
    i++;
    if (!parse_u64(s, &i, end, base)) return 0;
    if (i >= end || s[i] != ':') return 0;
    i++;
    u64 n = 0;
    u32 start = i;
    unsigned dv;
    while (i < end && is_digit_in_base(s[i], 10, &dv)) {
        n = n * 10 + dv;
        if (n > 0xffffffffull) return 0;
        i++;
    }
    if (i == start || n == 0) return 0;
    *irq = (u32)n;
    if (i < end && s[i] == ':') { /* optional platform device id, ignored */
        i++;
        if (i < end && s[i] == '-') i++;
        start = i;
        while (i < end && is_digit_in_base(s[i], 10, &dv)) i++;
        if (i == start) return 0;
    }
    return i == end;
}

int vio_cmdline_entries(const struct boot_params *bp, struct vio_cmdline_entry *out, int max) {
    static const char key[] = "virtio_mmio.device=";
    const u32 keylen = sizeof(key) - 1;
    int n = 0;
    u64 addr = bp->hdr.cmd_line_ptr | ((u64)bp->ext_cmd_line_ptr << 32);
    if (addr == 0 || addr >= (1ull << 30)) return 0;
    const char *p = (const char *)addr;
    u32 max_len = bp->hdr.cmdline_size ? bp->hdr.cmdline_size : 2047;
    if (max_len > 65536) max_len = 65536;
    u32 len = 0;
    while (len < max_len && p[len]) len++;
    u32 i = 0;
    while (i < len && n < max) {
        while (i < len && p[i] == ' ') i++;
        u32 start = i;
        while (i < len && p[i] != ' ') i++;
        u32 end = i;
        if (end - start <= keylen) continue;
        u32 k = 0;
        while (k < keylen && p[start + k] == key[k]) k++;
        if (k != keylen) continue;
        struct vio_cmdline_entry *e = &out[n++];
        e->ok = vio_parse_mmio_param(p + start + keylen, end - start - keylen, &e->size, &e->base,
                                     &e->irq);
    }
    return n;
}

int vio_scan(const struct boot_params *bp, struct vio_dev *devs, int max) {
    struct vio_cmdline_entry entries[32];
    int n = vio_cmdline_entries(bp, entries, max < 32 ? max : 32);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (!entries[i].ok || entries[i].base >= (1ull << 32)) continue;
        struct vio_dev *d = &devs[found++];
        d->index = i;
        d->base = entries[i].base;
        d->size = entries[i].size;
        d->irq = entries[i].irq;
        d->device_id = vio_read32(d, VIO_MAGIC) == 0x74726976u ? vio_read32(d, VIO_DEVICE_ID) : 0;
    }
    return found;
}

int vio_find(const struct boot_params *bp, u32 device_id, int nth, struct vio_dev *out) {
    struct vio_dev devs[32];
    int n = vio_scan(bp, devs, 32);
    for (int i = 0; i < n; i++) {
        if (devs[i].device_id != device_id) continue;
        if (nth-- == 0) {
            *out = devs[i];
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ registers */

u32 vio_read32(const struct vio_dev *d, u32 off) {
    return *(volatile u32 *)(d->base + off);
}
void vio_write32(const struct vio_dev *d, u32 off, u32 v) {
    *(volatile u32 *)(d->base + off) = v;
}
u8 vio_config8(const struct vio_dev *d, u32 off) {
    return *(volatile u8 *)(d->base + VIO_CONFIG + off);
}
u16 vio_config16(const struct vio_dev *d, u32 off) {
    return *(volatile u16 *)(d->base + VIO_CONFIG + off);
}
u32 vio_config32(const struct vio_dev *d, u32 off) {
    return *(volatile u32 *)(d->base + VIO_CONFIG + off);
}
u64 vio_config64(const struct vio_dev *d, u32 off) {
    u32 gen, lo, hi;
    do {
        gen = vio_read32(d, VIO_CONFIG_GENERATION);
        lo = vio_config32(d, off);
        hi = vio_config32(d, off + 4);
    } while (gen != vio_read32(d, VIO_CONFIG_GENERATION));
    return lo | ((u64)hi << 32);
}

/* ------------------------------------------------------------------ initialization */

u64 vio_negotiate(struct vio_dev *d, u64 wanted) {
    vio_write32(d, VIO_STATUS, 0);
    vio_write32(d, VIO_STATUS, VIO_ST_ACKNOWLEDGE);
    vio_write32(d, VIO_STATUS, VIO_ST_ACKNOWLEDGE | VIO_ST_DRIVER);
    vio_write32(d, VIO_DEVICE_FEATURES_SEL, 0);
    u64 offered = vio_read32(d, VIO_DEVICE_FEATURES);
    vio_write32(d, VIO_DEVICE_FEATURES_SEL, 1);
    offered |= (u64)vio_read32(d, VIO_DEVICE_FEATURES) << 32;
    u64 accepted = offered & wanted;
    if (!(accepted & VIO_F_VERSION_1)) return 0;
    vio_write32(d, VIO_DRIVER_FEATURES_SEL, 0);
    vio_write32(d, VIO_DRIVER_FEATURES, (u32)accepted);
    vio_write32(d, VIO_DRIVER_FEATURES_SEL, 1);
    vio_write32(d, VIO_DRIVER_FEATURES, (u32)(accepted >> 32));
    vio_write32(d, VIO_STATUS, VIO_ST_ACKNOWLEDGE | VIO_ST_DRIVER | VIO_ST_FEATURES_OK);
    if (!(vio_read32(d, VIO_STATUS) & VIO_ST_FEATURES_OK)) return 0;
    return accepted;
}

int vio_queue_setup(struct vio_queue *q, struct vio_dev *d, u32 index, u16 size) {
    vio_write32(d, VIO_QUEUE_SEL, index);
    u32 max = vio_read32(d, VIO_QUEUE_NUM_MAX);
    if (size == 0 || size > max || size > VIO_MAX_QUEUE || (size & (size - 1))) return 0;
    memset(q, 0, sizeof(*q));
    q->dev = d;
    q->index = index;
    q->size = size;
    q->desc = vio_alloc(16u * size, 4096);
    q->avail = vio_alloc(6u + 2u * size, 64);
    q->used = vio_alloc(6u + 8u * size, 64);
    for (u16 i = 0; i < size; i++) q->desc[i].next = (u16)(i + 1);
    q->num_free = size;
    u64 desc = (u64)q->desc, avail = (u64)q->avail, used = (u64)q->used;
    vio_write32(d, VIO_QUEUE_NUM, size);
    vio_write32(d, VIO_QUEUE_DESC_LOW, (u32)desc);
    vio_write32(d, VIO_QUEUE_DESC_HIGH, (u32)(desc >> 32));
    vio_write32(d, VIO_QUEUE_DRIVER_LOW, (u32)avail);
    vio_write32(d, VIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
    vio_write32(d, VIO_QUEUE_DEVICE_LOW, (u32)used);
    vio_write32(d, VIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
    vio_write32(d, VIO_QUEUE_READY, 1);
    return vio_read32(d, VIO_QUEUE_READY) == 1;
}

void vio_driver_ok(struct vio_dev *d) {
    vio_write32(d, VIO_STATUS, vio_read32(d, VIO_STATUS) | VIO_ST_DRIVER_OK);
}

/* ------------------------------------------------------------------ buffers */

int vio_add(struct vio_queue *q, const struct vio_buf *bufs, int n) {
    if (n <= 0 || n > q->num_free) return -1;
    u16 head = q->free_head, i = head, last = head;
    for (int k = 0; k < n; k++) {
        volatile struct vio_desc *d = &q->desc[i];
        u16 next = d->next;
        d->addr = (u64)bufs[k].addr;
        d->len = bufs[k].len;
        d->flags = (u16)((bufs[k].device_writes ? VIO_DESC_F_WRITE : 0) |
                         (k + 1 < n ? VIO_DESC_F_NEXT : 0));
        last = i;
        i = next;
    }
    (void)last;
    q->free_head = i;
    q->num_free = (u16)(q->num_free - n);
    q->chain_len[head] = (u16)n;
    q->avail[2 + (q->avail_idx % q->size)] = head;
    barrier();
    q->avail_idx++;
    __atomic_store_n(&q->avail[1], q->avail_idx, __ATOMIC_RELEASE);
    return head;
}

void vio_kick(struct vio_queue *q) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    vio_write32(q->dev, VIO_QUEUE_NOTIFY, q->index);
}

int vio_get_used(struct vio_queue *q, u32 *len) {
    u16 used_idx = (u16)(__atomic_load_n(&q->used[0], __ATOMIC_ACQUIRE) >> 16);
    if (used_idx == q->used_seen) return -1;
    u32 slot = 1 + 2u * (q->used_seen % q->size);
    u32 id = q->used[slot];
    if (len) *len = q->used[slot + 1];
    q->used_seen++;
    if (id >= q->size) {
        serial_puts("VIO bad used id\n");
        reset();
    }
    /* Return the chain's descriptors to the free list. */
    u16 count = q->chain_len[id], tail = (u16)id;
    for (u16 k = 1; k < count; k++) tail = q->desc[tail].next;
    q->desc[tail].next = q->free_head;
    q->free_head = (u16)id;
    q->num_free = (u16)(q->num_free + count);
    return (int)id;
}

int vio_wait_used(struct vio_queue *q, u32 *len, u64 spins) {
    for (u64 i = 0; i < spins; i++) {
        int head = vio_get_used(q, len);
        if (head >= 0) return head;
        cpu_relax();
    }
    return -1;
}

u32 vio_ack_interrupt(struct vio_dev *d) {
    u32 isr = vio_read32(d, VIO_INTERRUPT_STATUS);
    if (isr) vio_write32(d, VIO_INTERRUPT_ACK, isr);
    return isr;
}
