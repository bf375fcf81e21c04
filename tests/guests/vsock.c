/*
 * Minimal virtio-vsock driver (virtio 1.x over virtio-mmio), all in ring 3, polling, over the
 * runtime's shared driver (runtime/virtio.h). One stream connection at a time:
 *
 *  1. Guest-initiated: connects to host port 5000 (Kiln: <uds>_5000), sends
 *     "hello from guest\n", prints the host's reply line, shuts down both ways and waits for
 *     the host's RST.
 *  2. Host-initiated: prints "VSOCK listening port=6000", accepts the REQUEST a host client's
 *     `CONNECT 6000` produces, then moves <vsock_mib> MiB (kernel command line, default 64) each
 *     way at once under credit flow control, and prints FNV-1a 64 of both streams. Data: the
 *     little-endian bytes of xorshift64* words; guest->host seeded GUEST_SEED, host->guest
 *     HOST_SEED. Then it shuts down both ways and waits for the RST.
 *
 * Output: see README.md. Any protocol surprise prints "VSOCK FAIL <why>" and resets.
 */
#include "runtime/rt.h"
#include "runtime/virtio.h"

#define QSZ 64
#define NRX 32
#define NTX 16
#define HDR 44
#define RX_PAYLOAD 65536
#define TX_PAYLOAD 32768
#define GUEST_BUF_ALLOC (256u * 1024)
#define CREDIT_UPDATE_AFTER (64u * 1024)
#define IDLE_LIMIT (1ull << 31)

#define HOST_CID 2
#define TYPE_STREAM 1
#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7
#define SHUT_BOTH 3

#define GUEST_SEED 0x6b696c6e2d677374ull
#define HOST_SEED 0x6b696c6e2d686f73ull

struct __attribute__((packed)) hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
};

struct conn {
    u32 local_port, peer_port;
    u32 peer_buf_alloc, peer_fwd_cnt;
    u32 tx_cnt;  /* data bytes sent */
    u32 fwd_cnt; /* data bytes received and consumed */
    u32 fwd_told;
};

static struct vio_dev dev;
static struct vio_queue rxq, txq, evq;
static u64 guest_cid;
static u8 *rx_buf[NRX];
static u8 *tx_buf[NTX];
static int tx_free[NTX], tx_nfree;
static int tx_of_head[QSZ];
static int rx_of_head[QSZ];

static void fail(const char *why) {
    serial_puts("VSOCK FAIL ");
    serial_puts(why);
    serial_puts("\n");
    reset();
}

/* ---- data streams ---- */

struct stream {
    u64 x;      /* xorshift64* state */
    u64 word;   /* current output word */
    int left;   /* bytes of `word` not used yet */
    u64 fnv;    /* FNV-1a 64 of the bytes so far */
    u64 bytes;
};

static void stream_init(struct stream *s, u64 seed) {
    s->x = seed;
    s->word = 0;
    s->left = 0;
    s->fnv = 0xcbf29ce484222325ull;
    s->bytes = 0;
}
static u8 stream_next(struct stream *s) {
    if (s->left == 0) {
        s->x ^= s->x >> 12;
        s->x ^= s->x << 25;
        s->x ^= s->x >> 27;
        s->word = s->x * 0x2545f4914f6cdd1dull;
        s->left = 8;
    }
    u8 b = (u8)s->word;
    s->word >>= 8;
    s->left--;
    return b;
}
static void fnv_add(struct stream *s, const u8 *p, u32 n) {
    u64 h = s->fnv;
    for (u32 i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    s->fnv = h;
    s->bytes += n;
}

/* ---- queues ---- */

static void post_rx(int i) {
    struct vio_buf b = {rx_buf[i], HDR + RX_PAYLOAD, 1};
    int head = vio_add(&rxq, &b, 1);
    if (head < 0) fail("rx queue full");
    rx_of_head[head] = i;
}

static void reap_tx(void) {
    int head;
    while ((head = vio_get_used(&txq, 0)) >= 0) tx_free[tx_nfree++] = tx_of_head[head];
}

/* Sends one packet; waits for a free tx buffer. */
static void send_pkt(struct conn *c, u16 op, u32 flags, const u8 *data, u32 len, struct stream *gen) {
    u64 idle = 0;
    while (reap_tx(), tx_nfree == 0)
        if (++idle > IDLE_LIMIT) fail("tx queue stuck");
    int i = tx_free[--tx_nfree];
    struct hdr *h = (struct hdr *)tx_buf[i];
    h->src_cid = guest_cid;
    h->dst_cid = HOST_CID;
    h->src_port = c->local_port;
    h->dst_port = c->peer_port;
    h->len = len;
    h->type = TYPE_STREAM;
    h->op = op;
    h->flags = flags;
    h->buf_alloc = GUEST_BUF_ALLOC;
    h->fwd_cnt = c->fwd_cnt;
    c->fwd_told = c->fwd_cnt;
    u8 *payload = tx_buf[i] + HDR;
    if (gen) {
        for (u32 k = 0; k < len; k++) payload[k] = stream_next(gen);
        fnv_add(gen, payload, len);
    } else if (len) {
        memcpy(payload, data, len);
    }
    if (op == OP_RW) c->tx_cnt += len;
    struct vio_buf b = {tx_buf[i], HDR + len, 0};
    int head = vio_add(&txq, &b, 1);
    if (head < 0) fail("tx add");
    tx_of_head[head] = i;
    vio_kick(&txq);
}

static u32 peer_credit(const struct conn *c) {
    u32 in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Waits for the next rx packet: copies its header, returns its payload (valid until the buffer
 * is reposted with done_rx()). */
static int pending_rx = -1;
static const u8 *next_rx(struct hdr *h, int wait) {
    u64 idle = 0;
    u32 len;
    int head;
    while ((head = vio_get_used(&rxq, &len)) < 0) {
        if (!wait) return 0;
        if (++idle > IDLE_LIMIT) fail("no packet from the host");
        cpu_relax();
    }
    if (len < HDR) fail("short rx packet");
    pending_rx = rx_of_head[head];
    memcpy(h, rx_buf[pending_rx], HDR);
    if (h->len != len - HDR || h->len > RX_PAYLOAD) fail("rx len mismatch");
    if (h->src_cid != HOST_CID || h->dst_cid != guest_cid || h->type != TYPE_STREAM)
        fail("rx addresses");
    return rx_buf[pending_rx] + HDR;
}
static void done_rx(void) {
    post_rx(pending_rx);
    vio_kick(&rxq);
    pending_rx = -1;
}

static int for_conn(const struct conn *c, const struct hdr *h) {
    return h->src_port == c->peer_port && h->dst_port == c->local_port;
}
static void note_credit(struct conn *c, const struct hdr *h) {
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
}

/* Sends SHUTDOWN (both) and waits for the RST, consuming any data still in flight. */
static void close_conn(struct conn *c) {
    send_pkt(c, OP_SHUTDOWN, SHUT_BOTH, 0, 0, 0);
    for (;;) {
        struct hdr h;
        next_rx(&h, 1);
        done_rx();
        if (!for_conn(c, &h)) continue;
        if (h.op == OP_RST) return;
    }
}

/* ---- phases ---- */

static void guest_initiated(void) {
    struct conn c = {1024, 5000, 0, 0, 0, 0, 0};
    send_pkt(&c, OP_REQUEST, 0, 0, 0, 0);
    struct hdr h;
    next_rx(&h, 1);
    done_rx();
    if (!for_conn(&c, &h) || h.op != OP_RESPONSE) fail("guest-conn: no RESPONSE");
    note_credit(&c, &h);
    static const char hello[] = "hello from guest\n";
    send_pkt(&c, OP_RW, 0, (const u8 *)hello, sizeof(hello) - 1, 0);
    char line[128];
    u32 n = 0;
    while (n == 0 || line[n - 1] != '\n') {
        const u8 *p = next_rx(&h, 1);
        if (!for_conn(&c, &h)) fail("guest-conn: packet for another connection");
        note_credit(&c, &h);
        if (h.op == OP_RW) {
            for (u32 i = 0; i < h.len && n < sizeof(line) - 1; i++) line[n++] = (char)p[i];
            c.fwd_cnt += h.len;
        } else if (h.op != OP_CREDIT_UPDATE) {
            fail("guest-conn: unexpected op");
        }
        done_rx();
    }
    line[n - 1] = 0;
    serial_puts("VSOCK guest-conn port=5000 reply=");
    serial_puts(line);
    serial_puts("\n");
    close_conn(&c);
    serial_puts("VSOCK guest-conn closed\n");
}

/* The decimal value of `key` (e.g. "vsock_mib=") on the kernel command line, or `dflt`. */
static u64 cmdline_value(const struct boot_params *bp, const char *key, u64 dflt) {
    const char *p = (const char *)(u64)bp->hdr.cmd_line_ptr;
    if (!p) return dflt;
    u32 klen = (u32)strlen(key);
    for (u32 i = 0; p[i]; i++) {
        if (i != 0 && p[i - 1] != ' ') continue;
        u32 k = 0;
        while (k < klen && p[i + k] == key[k]) k++;
        if (k != klen) continue;
        u64 v = 0;
        u32 j = i + klen;
        if (p[j] < '0' || p[j] > '9') return dflt;
        while (p[j] >= '0' && p[j] <= '9') v = v * 10 + (u64)(p[j++] - '0');
        return v;
    }
    return dflt;
}

static void host_initiated(u64 total) {
    serial_puts("VSOCK listening port=6000\n");
    struct conn c = {6000, 0, 0, 0, 0, 0, 0};
    struct hdr h;
    for (;;) {
        next_rx(&h, 1);
        done_rx();
        if (h.op == OP_REQUEST && h.dst_port == 6000) break;
        if (h.op != OP_RST) { /* nothing else listens here */
            struct conn other = {h.dst_port, h.src_port, 0, 0, 0, 0, 0};
            send_pkt(&other, OP_RST, 0, 0, 0, 0);
        }
    }
    c.peer_port = h.src_port;
    note_credit(&c, &h);
    send_pkt(&c, OP_RESPONSE, 0, 0, 0, 0);
    serial_puts("VSOCK accepted from port=");
    serial_put_dec(c.peer_port);
    serial_puts("\n");

    struct stream out, in;
    stream_init(&out, GUEST_SEED);
    stream_init(&in, HOST_SEED);
    u64 idle = 0;
    while (in.bytes < total || out.bytes < total) {
        int progress = 0;
        const u8 *p;
        while ((p = next_rx(&h, 0)) != 0) {
            progress = 1;
            if (!for_conn(&c, &h)) fail("bulk: packet for another connection");
            note_credit(&c, &h);
            if (h.op == OP_RW) {
                for (u32 i = 0; i < h.len; i++)
                    if (p[i] != stream_next(&in)) fail("bulk: host data differs from its stream");
                fnv_add(&in, p, h.len);
                c.fwd_cnt += h.len;
            } else if (h.op == OP_CREDIT_REQUEST) {
                done_rx();
                send_pkt(&c, OP_CREDIT_UPDATE, 0, 0, 0, 0);
                continue;
            } else if (h.op != OP_CREDIT_UPDATE) {
                fail("bulk: unexpected op");
            }
            done_rx();
        }
        reap_tx();
        u32 credit = peer_credit(&c);
        if (out.bytes < total && credit > 0 && tx_nfree > 0) {
            u64 n = total - out.bytes;
            if (n > TX_PAYLOAD) n = TX_PAYLOAD;
            if (n > credit) n = credit;
            send_pkt(&c, OP_RW, 0, 0, (u32)n, &out);
            progress = 1;
        }
        if (c.fwd_cnt - c.fwd_told >= CREDIT_UPDATE_AFTER) {
            send_pkt(&c, OP_CREDIT_UPDATE, 0, 0, 0, 0);
            progress = 1;
        }
        if (progress) {
            idle = 0;
        } else if (++idle > IDLE_LIMIT) {
            fail("bulk: stalled");
        } else {
            cpu_relax();
        }
    }
    serial_puts("VSOCK bulk rx_bytes=");
    serial_put_dec(in.bytes);
    serial_puts(" rx_fnv=");
    serial_put_hex(in.fnv, 16);
    serial_puts(" tx_bytes=");
    serial_put_dec(out.bytes);
    serial_puts(" tx_fnv=");
    serial_put_hex(out.fnv, 16);
    serial_puts("\n");
    close_conn(&c);
}

void guest_main(const struct boot_params *bp) {
    if (!vio_find(bp, VIO_ID_VSOCK, 0, &dev)) fail("no virtio-vsock device");
    if (!vio_negotiate(&dev, VIO_F_VERSION_1)) fail("features");
    guest_cid = vio_config64(&dev, 0);
    if (!vio_queue_setup(&rxq, &dev, 0, QSZ) || !vio_queue_setup(&txq, &dev, 1, QSZ) ||
        !vio_queue_setup(&evq, &dev, 2, 8))
        fail("queue setup");
    vio_driver_ok(&dev);
    if (!(vio_read32(&dev, VIO_STATUS) & VIO_ST_DRIVER_OK)) fail("DRIVER_OK refused");
    for (int i = 0; i < NRX; i++) {
        rx_buf[i] = vio_alloc(HDR + RX_PAYLOAD, 64);
        post_rx(i);
    }
    vio_kick(&rxq);
    for (int i = 0; i < NTX; i++) {
        tx_buf[i] = vio_alloc(HDR + TX_PAYLOAD, 64);
        tx_free[tx_nfree++] = i;
    }
    for (int i = 0; i < 4; i++) {
        struct vio_buf b = {vio_alloc(8, 8), 8, 1};
        vio_add(&evq, &b, 1);
    }
    vio_kick(&evq);
    serial_puts("VSOCK cid=");
    serial_put_dec(guest_cid);
    serial_puts("\n");

    guest_initiated();
    host_initiated(cmdline_value(bp, "vsock_mib=", 64) << 20);
    serial_puts("VSOCK done\n");
}
