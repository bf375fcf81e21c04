/* Kiln test-guest runtime: ring 0 init (TSS, IDT, PIC), drop to ring 3, serial helpers. */
#include "rt.h"

volatile u64 rt_ticks;
volatile u64 rt_irq_count[16];
volatile u8 rt_rx_buf[256];
volatile u32 rt_rx_head;
const struct boot_params *rt_boot_params;

extern u64 rt_gdt[];
extern const u64 rt_exc_stubs[32];
extern const u64 rt_irq_stubs[16];
extern char kstack_top[], ustack_top[];

__attribute__((weak)) void guest_ring0_hook(const struct boot_params *bp) { (void)bp; }
/* Weak *undeclared-by-default* symbol: a weak definition here would be constant-folded by GCC. */
extern const int guest_enable_interrupts __attribute__((weak));

struct tss64 {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iopb_offset;
} __attribute__((packed));

static struct tss64 rt_tss __attribute__((aligned(16)));
static u64 rt_idt[256 * 2] __attribute__((aligned(16)));

struct exc_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rbp, rbx, rdx, rcx, rax;
    u64 vec, err, rip, cs, rflags, rsp, ss;
};

static void set_gate(int vec, u64 handler) {
    rt_idt[vec * 2] = (handler & 0xffff) | ((u64)RT_KCODE << 16) | (0x8eull << 40) |
                      (((handler >> 16) & 0xffff) << 48);
    rt_idt[vec * 2 + 1] = handler >> 32;
}

static void triple_fault(void) __attribute__((noreturn));
static void triple_fault(void) {
    struct __attribute__((packed)) { u16 limit; u64 base; } empty = {0, 0};
    __asm__ volatile("lidt %0\n\tud2" : : "m"(empty) : "memory");
    for (;;) __asm__ volatile("hlt");
}

/* Any CPU exception: report on serial, then triple-fault so the VMM exits non-zero. */
void rt_exception(struct exc_frame *f) __attribute__((noreturn, used));
void rt_exception(struct exc_frame *f) {
    u64 cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    serial_puts("EXCEPTION vec=");
    serial_put_dec(f->vec);
    serial_puts(" rip=0x");
    serial_put_hex(f->rip, 16);
    serial_puts(" err=0x");
    serial_put_hex(f->err, 4);
    serial_puts(" cs=0x");
    serial_put_hex(f->cs, 4);
    serial_puts(" rsp=0x");
    serial_put_hex(f->rsp, 16);
    serial_puts(" cr2=0x");
    serial_put_hex(cr2, 16);
    serial_putc('\n');
    triple_fault();
}

static void user_entry(const struct boot_params *bp) __attribute__((noreturn, used));
static void user_entry(const struct boot_params *bp) {
    guest_main(bp);
    reset();
}

void rt_ring0_main(const struct boot_params *bp) __attribute__((noreturn, used));
void rt_ring0_main(const struct boot_params *bp) {
    /* TSS: RSP0 = kernel interrupt stack, no I/O bitmap (IOPL=3 covers port access). */
    u64 base = (u64)&rt_tss;
    u64 limit = sizeof(rt_tss) - 1;
    rt_tss.rsp[0] = (u64)kstack_top;
    rt_tss.iopb_offset = sizeof(rt_tss);
    rt_gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    rt_gdt[6] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(RT_TSS) : "memory");

    for (int i = 0; i < 32; i++) set_gate(i, rt_exc_stubs[i]);
    for (int i = 0; i < 16; i++) set_gate(RT_PIC_VECTOR_BASE + i, rt_irq_stubs[i]);
    struct __attribute__((packed)) { u16 limit; u64 base; } idtr = {sizeof(rt_idt) - 1, (u64)rt_idt};
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");

    /* 8259 PICs: master -> 0x20, slave -> 0x28, everything masked. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, RT_PIC_VECTOR_BASE);
    outb(0xa1, RT_PIC_VECTOR_BASE + 8);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);

    guest_ring0_hook(bp);

    u64 rflags = 0x3002; /* IOPL=3, reserved bit 1 */
    if (&guest_enable_interrupts != NULL && *(const volatile int *)&guest_enable_interrupts)
        rflags |= 0x200;
    u64 ursp = (u64)ustack_top - 8; /* as if just called: rsp+8 16-byte aligned */
    __asm__ volatile(
        "pushq %[ss]\n\t"
        "pushq %[rsp]\n\t"
        "pushq %[fl]\n\t"
        "pushq %[cs]\n\t"
        "pushq %[rip]\n\t"
        "iretq"
        :
        : [ss] "i"((u64)RT_UDATA), [rsp] "r"(ursp), [fl] "r"(rflags), [cs] "i"((u64)RT_UCODE),
          [rip] "r"((u64)user_entry), "D"(bp)
        : "memory");
    __builtin_unreachable();
}

/* ------------------------------------------------------------------ helpers */
void serial_putc(char c) {
    for (u32 i = 0; i < 1000000 && !(inb(COM1 + 5) & 0x20); i++) cpu_relax();
    outb(COM1, (u8)c);
}

void serial_write(const void *buf, size_t n) {
    const char *p = buf;
    for (size_t i = 0; i < n; i++) serial_putc(p[i]);
}

void serial_puts(const char *s) {
    while (*s) serial_putc(*s++);
}

static const char hexdigits[] = "0123456789abcdef";

void serial_put_hex(u64 v, int digits) {
    for (int i = digits - 1; i >= 0; i--) serial_putc(hexdigits[(v >> (i * 4)) & 0xf]);
}

void serial_put_hex_min(u64 v) {
    int digits = 1;
    while (digits < 16 && (v >> (digits * 4))) digits++;
    serial_put_hex(v, digits);
}

void serial_put_dec(u64 v) {
    char buf[21];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) serial_putc(buf[--n]);
}

void serial_put_hexbytes(const void *buf, size_t n) {
    const u8 *p = buf;
    for (size_t i = 0; i < n; i++) {
        serial_putc(hexdigits[p[i] >> 4]);
        serial_putc(hexdigits[p[i] & 0xf]);
    }
}

void reset(void) {
    outb(0x64, 0xfe);
    for (;;) cpu_relax();
}

void pic_unmask(int irq) {
    if (irq >= 8) {
        outb(0xa1, inb(0xa1) & ~(1u << (irq - 8)));
        irq = 2; /* cascade */
    }
    outb(0x21, inb(0x21) & ~(1u << irq));
}

void pic_mask(int irq) {
    if (irq >= 8)
        outb(0xa1, inb(0xa1) | (1u << (irq - 8)));
    else
        outb(0x21, inb(0x21) | (1u << irq));
}

void *memset(void *d, int c, size_t n) {
    u8 *p = d;
    for (size_t i = 0; i < n; i++) p[i] = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n) {
    u8 *p = d;
    const u8 *q = s;
    for (size_t i = 0; i < n; i++) p[i] = q[i];
    return d;
}

int memcmp(const void* a, const void* b, size_t n) {
    const u8* x = a;
    const u8* y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
