/* Kiln test-guest runtime: freestanding x86-64, ring 0 setup then guest_main() in ring 3. */
#ifndef KILN_GUEST_RT_H
#define KILN_GUEST_RT_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Selectors of the runtime GDT. */
#define RT_KCODE 0x08
#define RT_KDATA 0x10
#define RT_UDATA 0x1b /* 0x18 | RPL3 */
#define RT_UCODE 0x23 /* 0x20 | RPL3 */
#define RT_TSS 0x28

#define RT_PIC_VECTOR_BASE 0x20 /* master 0x20-0x27, slave 0x28-0x2f */

#define COM1 0x3f8

/* Implemented by every guest; runs in ring 3 with IOPL=3. */
void guest_main(const struct boot_params* bp);

/* Optional (weak) hooks a guest may define. */
void guest_ring0_hook(
    const struct boot_params* bp); /* runs in ring 0 right before the drop to ring 3 */
extern const int
    guest_enable_interrupts; /* optional; define as nonzero to enter ring 3 with RFLAGS.IF=1 */

/* Counters/buffers maintained by the (ring 0) interrupt handlers; readable from ring 3. */
extern volatile u64 rt_ticks;         /* IRQ0 count */
extern volatile u64 rt_irq_count[16]; /* per-IRQ count (IRQ0 counts here too) */
extern volatile u8 rt_rx_buf[256];    /* serial RX ring (filled by the IRQ4 handler) */
extern volatile u32 rt_rx_head;       /* written by the IRQ handler, index mod 256 */
extern const struct boot_params* rt_boot_params;

static inline void outb(u16 port, u8 v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}
static inline u8 inb(u16 port) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
  return v;
}
static inline u16 read_cs(void) {
  u16 cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs;
}
static inline void cpu_relax(void) {
  __asm__ volatile("pause" ::: "memory");
}

void serial_putc(char c);
void serial_puts(const char* s);
void serial_write(const void* buf, size_t n);
void serial_put_hex(u64 v, int digits); /* lowercase, exactly `digits` digits (1..16), no prefix */
void serial_put_hex_min(u64 v);         /* lowercase, no leading zeros ("0" for 0), no prefix */
void serial_put_dec(u64 v);
void serial_put_hexbytes(const void* buf, size_t n); /* two lowercase hex digits per byte */
void reset(void) __attribute__((noreturn));          /* out 0x64,0xFE then spin */

/* PIC mask helpers (ports 0x21 / 0xa1); all IRQs are masked at entry. */
void pic_unmask(int irq);
void pic_mask(int irq);

void* memset(void* d, int c, size_t n);
void* memcpy(void* d, const void* s, size_t n);
size_t strlen(const char* s);
int memcmp(const void* a, const void* b, size_t n);

#endif
