/* Minimal virtio-mmio (virtio 1.x, register layout version 2) driver for Kiln's test guests.
 * Ring 3, polling; interrupts are counted by the runtime (rt_irq_count[irq]) and acknowledged
 * with vio_ack_interrupt(). Devices come from `virtio_mmio.device=<size>@<base>:<irq>` on the
 * kernel command line (Kiln announces every device there), in command-line order.
 *
 * Typical use:
 *   struct vio_dev d;  struct vio_queue q;
 *   if (!vio_find(bp, VIO_ID_RNG, 0, &d)) ...;
 *   u64 f = vio_negotiate(&d, VIO_F_VERSION_1);           // 0: the device refused
 *   vio_queue_setup(&q, &d, 0, 16);  vio_driver_ok(&d);
 *   u8 *buf = vio_alloc(64, 16);
 *   struct vio_buf b = {buf, 64, 1};  vio_add(&q, &b, 1);  vio_kick(&q);
 *   u32 len;  int head = vio_wait_used(&q, &len, VIO_SPIN_FOREVER);
 */
#ifndef KILN_GUEST_VIRTIO_H
#define KILN_GUEST_VIRTIO_H

#include "rt.h"

#define VIO_MAX_QUEUE 256
#define VIO_SPIN_FOREVER (~0ull)

/* Device ids. */
#define VIO_ID_NET 1
#define VIO_ID_BLOCK 2
#define VIO_ID_CONSOLE 3
#define VIO_ID_RNG 4
#define VIO_ID_VSOCK 19

#define VIO_F_VERSION_1 (1ull << 32)
#define VIO_F_RING_EVENT_IDX (1ull << 29)

/* Registers (all 32-bit). */
#define VIO_MAGIC 0x000
#define VIO_VERSION 0x004
#define VIO_DEVICE_ID 0x008
#define VIO_DEVICE_FEATURES 0x010
#define VIO_DEVICE_FEATURES_SEL 0x014
#define VIO_DRIVER_FEATURES 0x020
#define VIO_DRIVER_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL 0x030
#define VIO_QUEUE_NUM_MAX 0x034
#define VIO_QUEUE_NUM 0x038
#define VIO_QUEUE_READY 0x044
#define VIO_QUEUE_NOTIFY 0x050
#define VIO_INTERRUPT_STATUS 0x060
#define VIO_INTERRUPT_ACK 0x064
#define VIO_STATUS 0x070
#define VIO_QUEUE_DESC_LOW 0x080
#define VIO_QUEUE_DESC_HIGH 0x084
#define VIO_QUEUE_DRIVER_LOW 0x090
#define VIO_QUEUE_DRIVER_HIGH 0x094
#define VIO_QUEUE_DEVICE_LOW 0x0a0
#define VIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIO_CONFIG_GENERATION 0x0fc
#define VIO_CONFIG 0x100

#define VIO_ST_ACKNOWLEDGE 1u
#define VIO_ST_DRIVER 2u
#define VIO_ST_DRIVER_OK 4u
#define VIO_ST_FEATURES_OK 8u
#define VIO_ST_NEEDS_RESET 64u
#define VIO_ST_FAILED 128u

#define VIO_DESC_F_NEXT 1
#define VIO_DESC_F_WRITE 2

struct vio_desc {
  u64 addr;
  u32 len;
  u16 flags;
  u16 next;
};

struct vio_dev {
  int index; /* position among the command line's virtio_mmio.device= entries */
  u64 base, size;
  u32 irq;
  u32 device_id;
};

struct vio_queue {
  struct vio_dev* dev;
  u32 index;
  u16 size;
  volatile struct vio_desc* desc;
  volatile u16* avail; /* flags, idx, ring[size], used_event */
  volatile u32* used;  /* flags|idx as one word, then {id, len} pairs, then avail_event */
  u16 avail_idx;       /* free-running */
  u16 used_seen;       /* free-running */
  u16 free_head;
  u16 num_free;
  u16 chain_len[VIO_MAX_QUEUE]; /* descriptors in the chain headed here */
};

struct vio_buf {
  void* addr;
  u32 len;
  int device_writes; /* 1: the device writes this buffer (VIRTQ_DESC_F_WRITE) */
};

/* Bump allocator over a static, identity-mapped pool (never freed). Zeroed memory. */
void* vio_alloc(size_t bytes, size_t align);

/* One `virtio_mmio.device=` value from the command line. */
struct vio_cmdline_entry {
  int ok; /* 0: the value did not parse (size@base:irq[:id], as Linux reads it) */
  u64 size, base;
  u32 irq;
};
/* The command line's virtio_mmio.device= entries in order; returns how many (<= max). */
int vio_cmdline_entries(const struct boot_params* bp, struct vio_cmdline_entry* out, int max);
/* Parses one value "<size>@<base>:<irq>[:<id>]" of length `len`. 1 on success. */
int vio_parse_mmio_param(const char* s, u32 len, u64* size, u64* base, u32* irq);

/* The n-th (0-based) device with `device_id` among the command line's devices. 1 if found. */
int vio_find(const struct boot_params* bp, u32 device_id, int nth, struct vio_dev* out);
/* Every command-line device (DeviceID read from its window); returns how many (<= max). */
int vio_scan(const struct boot_params* bp, struct vio_dev* devs, int max);

u32 vio_read32(const struct vio_dev* d, u32 off);
void vio_write32(const struct vio_dev* d, u32 off, u32 v);
u8 vio_config8(const struct vio_dev* d, u32 off);
u16 vio_config16(const struct vio_dev* d, u32 off);
u32 vio_config32(const struct vio_dev* d, u32 off);
u64 vio_config64(const struct vio_dev* d, u32 off);

/* Reset, ACKNOWLEDGE, DRIVER, accept device_features & wanted, FEATURES_OK. Returns the accepted
 * features, or 0 when the device offers no VERSION_1 or refused FEATURES_OK. */
u64 vio_negotiate(struct vio_dev* d, u64 wanted);
/* Sets up queue `index` with `size` entries (power of two, <= QueueNumMax and VIO_MAX_QUEUE).
 * Returns 1 on success. */
int vio_queue_setup(struct vio_queue* q, struct vio_dev* d, u32 index, u16 size);
void vio_driver_ok(struct vio_dev* d);

/* Makes one chain of `n` buffers available (not kicked). Returns its head, -1 if no room. */
int vio_add(struct vio_queue* q, const struct vio_buf* bufs, int n);
void vio_kick(struct vio_queue* q);
/* Takes one used element: returns its head and sets *len, or -1 if there is none yet. */
int vio_get_used(struct vio_queue* q, u32* len);
/* vio_get_used, polling up to `spins` times. */
int vio_wait_used(struct vio_queue* q, u32* len, u64 spins);
/* Reads and acknowledges InterruptStatus; returns what was set. */
u32 vio_ack_interrupt(struct vio_dev* d);

#endif
