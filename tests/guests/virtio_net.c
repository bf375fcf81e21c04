/*
 * virtio-net test guest, over the runtime's virtio driver (runtime/virtio.h), all in ring 3.
 *
 * The guest is 192.168.77.2, the host side of the TAP 192.168.77.1/24. It reads its MAC from
 * config space (02:00:00:00:00:01 without VIRTIO_NET_F_MAC), keeps RX_BUFS receive buffers
 * posted, and then, polling the RX queue:
 *   - asks for the host's MAC (ARP request) and, once answered, sends it an ICMP echo request;
 *   - answers ARP requests for its own address;
 *   - echoes every UDP datagram sent to port 7777 back to its sender;
 * Output lines (see README.md): VNET mac/arp-reply/echo-reply/ready/arp-request/udp/irqs/done.
 * It stops after the first echoed UDP datagram (VNET done) or after SPIN_LIMIT polls (VNET
 * timeout ...), then resets.
 */
#include "runtime/rt.h"
#include "runtime/virtio.h"

const int guest_enable_interrupts = 1; /* ring 3 runs with IF=1; all PIC lines start masked */

#define F_NET_MAC (1ull << 5)
#define F_NET_STATUS (1ull << 16)

#define QSZ 16
#define RX_BUFS 8
#define BUF_BYTES 2048
#define HDR 12 /* struct virtio_net_hdr_v1 */
#define SPIN_LIMIT (1ull << 31)
#define UDP_PORT 7777

static const u8 guest_ip[4] = {192, 168, 77, 2};
static const u8 host_ip[4] = {192, 168, 77, 1};
static u8 guest_mac[6] = {2, 0, 0, 0, 0, 1};
static u8 host_mac[6];
static int have_host_mac;

static struct vio_dev dev;
static struct vio_queue rxq, txq;
static u8 *rx_buf[QSZ];   /* by descriptor head */
static u8 *tx_frame;      /* one frame in flight at a time */

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put_be16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static int same(const u8 *a, const u8 *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static u16 checksum(const u8 *p, u32 len) {
    u32 sum = 0;
    for (u32 i = 0; i + 1 < len; i += 2) sum += be16(p + i);
    if (len & 1) sum += (u32)p[len - 1] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

static void put_mac(const u8 *m) {
    for (int i = 0; i < 6; i++) {
        if (i) serial_putc(':');
        serial_put_hex(m[i], 2);
    }
}
static void put_ip(const u8 *ip) {
    for (int i = 0; i < 4; i++) {
        if (i) serial_putc('.');
        serial_put_dec(ip[i]);
    }
}

/* Sends the `len`-byte Ethernet frame at tx_frame + HDR and waits for the device to take it. */
static void transmit(u32 len) {
    memset(tx_frame, 0, HDR); /* no offloads: flags 0, GSO_NONE */
    struct vio_buf b = {tx_frame, HDR + len, 0};
    if (vio_add(&txq, &b, 1) < 0) {
        serial_puts("VNET tx queue full\n");
        reset();
    }
    vio_kick(&txq);
    if (vio_wait_used(&txq, 0, SPIN_LIMIT) < 0) {
        serial_puts("VNET timeout tx\n");
        reset();
    }
}

static u8 *eth(const u8 *dst, u16 type) {
    u8 *f = tx_frame + HDR;
    memcpy(f, dst, 6);
    memcpy(f + 6, guest_mac, 6);
    put_be16(f + 12, type);
    return f + 14;
}

static void send_arp(u16 op, const u8 *dst_mac, const u8 *target_mac, const u8 *target_ip) {
    static const u8 broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    u8 *a = eth(dst_mac ? dst_mac : broadcast, 0x0806);
    put_be16(a, 1);      /* Ethernet */
    put_be16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, op);
    memcpy(a + 8, guest_mac, 6);
    memcpy(a + 14, guest_ip, 4);
    memcpy(a + 18, target_mac, 6);
    memcpy(a + 24, target_ip, 4);
    transmit(14 + 28);
}

/* IPv4 header for `payload` bytes of protocol `proto` to `dst_ip` (via host_mac). */
static u8 *ipv4(const u8 *dst_mac, const u8 *dst_ip, u8 proto, u32 payload) {
    u8 *ip = eth(dst_mac, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put_be16(ip + 2, (u16)(20 + payload));
    ip[8] = 64;
    ip[9] = proto;
    memcpy(ip + 12, guest_ip, 4);
    memcpy(ip + 16, dst_ip, 4);
    put_be16(ip + 10, checksum(ip, 20));
    return ip + 20;
}

static void send_echo_request(void) {
    static const char data[] = "kiln-ping";
    u8 *icmp = ipv4(host_mac, host_ip, 1, 8 + sizeof(data));
    memset(icmp, 0, 8);
    icmp[0] = 8; /* echo request */
    put_be16(icmp + 4, 0x4b4e);
    put_be16(icmp + 6, 1);
    memcpy(icmp + 8, data, sizeof(data));
    put_be16(icmp + 2, checksum(icmp, 8 + sizeof(data)));
    transmit(14 + 20 + 8 + sizeof(data));
}

static int ready_printed;
static int done;

static void handle_arp(const u8 *f, u32 len) {
    if (len < 14 + 28) return;
    const u8 *a = f + 14;
    const u16 op = be16(a + 6);
    if (op == 2 && same(a + 14, host_ip, 4) && !have_host_mac) {
        memcpy(host_mac, a + 8, 6);
        have_host_mac = 1;
        serial_puts("VNET arp-reply ip=");
        put_ip(a + 14);
        serial_puts(" mac=");
        put_mac(host_mac);
        serial_putc('\n');
        send_echo_request();
    } else if (op == 1 && same(a + 24, guest_ip, 4)) {
        serial_puts("VNET arp-request from=");
        put_ip(a + 14);
        serial_putc('\n');
        send_arp(2, a + 8, a + 8, a + 14);
    }
}

static void handle_ipv4(const u8 *f, u32 len) {
    if (len < 14 + 20) return;
    const u8 *ip = f + 14;
    const u32 ihl = (ip[0] & 15u) * 4;
    const u32 total = be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl || 14 + total > len) return;
    if (!same(ip + 16, guest_ip, 4) || checksum(ip, ihl) != 0) return;
    const u8 *l4 = ip + ihl;
    const u32 l4_len = total - ihl;
    if (ip[9] == 1 && l4_len >= 8 && l4[0] == 0 && be16(l4 + 4) == 0x4b4e) {
        serial_puts("VNET echo-reply from=");
        put_ip(ip + 12);
        serial_puts(" seq=");
        serial_put_dec(be16(l4 + 6));
        serial_puts(" checksum=");
        serial_puts(checksum(l4, l4_len) == 0 ? "ok" : "bad");
        serial_putc('\n');
        if (!ready_printed) {
            serial_puts("VNET ready\n");
            ready_printed = 1;
        }
    } else if (ip[9] == 17 && l4_len >= 8 && be16(l4 + 2) == UDP_PORT) {
        const u32 data_len = be16(l4 + 4) < 8 || be16(l4 + 4) > l4_len ? 0 : be16(l4 + 4) - 8u;
        serial_puts("VNET udp from=");
        put_ip(ip + 12);
        serial_putc(':');
        serial_put_dec(be16(l4));
        serial_puts(" len=");
        serial_put_dec(data_len);
        serial_puts(" data=");
        serial_write(l4 + 8, data_len > 64 ? 64 : data_len);
        serial_putc('\n');
        /* Echo it back, addresses and ports swapped; UDP checksum 0 (none). */
        u8 src_mac[6], src_ip[4], sport[2];
        memcpy(src_mac, f + 6, 6);
        memcpy(src_ip, ip + 12, 4);
        memcpy(sport, l4, 2);
        u8 data[512];
        const u32 n = data_len > sizeof(data) ? sizeof(data) : data_len;
        memcpy(data, l4 + 8, n);
        u8 *udp = ipv4(src_mac, src_ip, 17, 8 + n);
        put_be16(udp, UDP_PORT);
        memcpy(udp + 2, sport, 2);
        put_be16(udp + 4, (u16)(8 + n));
        put_be16(udp + 6, 0);
        memcpy(udp + 8, data, n);
        transmit(14 + 20 + 8 + n);
        done = 1;
    }
}

static void post_rx(u8 *buf) {
    struct vio_buf b = {buf, BUF_BYTES, 1};
    int head = vio_add(&rxq, &b, 1);
    if (head < 0) {
        serial_puts("VNET rx queue full\n");
        reset();
    }
    rx_buf[head] = buf;
}

void guest_main(const struct boot_params *bp) {
    if (!vio_find(bp, VIO_ID_NET, 0, &dev)) {
        serial_puts("VNET none\n");
        return;
    }
    const u64 features = vio_negotiate(&dev, VIO_F_VERSION_1 | F_NET_MAC | F_NET_STATUS);
    if (!features || !vio_queue_setup(&rxq, &dev, 0, QSZ) ||
        !vio_queue_setup(&txq, &dev, 1, QSZ)) {
        serial_puts("VNET setup failed\n");
        return;
    }
    vio_driver_ok(&dev);
    pic_unmask((int)dev.irq);
    if (features & F_NET_MAC)
        for (int i = 0; i < 6; i++) guest_mac[i] = vio_config8(&dev, (u32)i);
    serial_puts("VNET mac=");
    put_mac(guest_mac);
    serial_puts(" status=");
    serial_put_dec((features & F_NET_STATUS) ? vio_config16(&dev, 6) : 0);
    serial_puts(" irq=");
    serial_put_dec(dev.irq);
    serial_putc('\n');

    tx_frame = vio_alloc(BUF_BYTES, 64);
    for (int i = 0; i < RX_BUFS; i++) post_rx(vio_alloc(BUF_BYTES, 64));
    vio_kick(&rxq);

    static const u8 zero_mac[6];
    send_arp(1, 0, zero_mac, host_ip);

    u64 spins = 0;
    while (!done) {
        u32 len = 0;
        const int head = vio_get_used(&rxq, &len);
        if (head < 0) {
            if (++spins == SPIN_LIMIT) {
                serial_puts("VNET timeout ready=");
                serial_put_dec((u64)ready_printed);
                serial_putc('\n');
                return;
            }
            cpu_relax();
            continue;
        }
        u8 *buf = rx_buf[head];
        if (len > HDR && len <= BUF_BYTES) {
            const u8 *f = buf + HDR;
            const u32 flen = len - HDR;
            if (flen >= 14 && be16(f + 12) == 0x0806) handle_arp(f, flen);
            if (flen >= 14 && be16(f + 12) == 0x0800) handle_ipv4(f, flen);
        }
        post_rx(buf);
        vio_kick(&rxq);
    }
    vio_ack_interrupt(&dev);
    serial_puts("VNET irqs=");
    serial_put_dec(rt_irq_count[dev.irq]);
    serial_putc('\n');
    serial_puts("VNET done\n");
}
