/*
 * smp: finds the Intel MP 1.4 table like an OS without ACPI, then starts every application
 * processor it lists through the LAPIC (INIT, SIPI, SIPI) into a 16-bit real-mode trampoline
 * at 0x3000. Each AP takes a ticket (lock xadd), stores its CPUID initial APIC id in the
 * ticket's slot, counts itself done (lock inc) and halts with interrupts off.
 *
 * Command line `smp.ap_action=reset` or `smp.ap_action=triplefault`: the last AP to arrive
 * resets the machine (i8042) or triple-faults instead of halting, while the BSP spins in
 * ring 3 and the other APs halt: the VMM must stop every vCPU. `smp.hold`: after its report
 * the BSP spins forever instead of resetting (pause/resume/stop tests with halted APs).
 *
 * The BSP does all of its work in ring 3 (the runtime's identity map is user-accessible, so
 * the LAPIC registers and the low pages are reachable from there).
 */
#include "runtime/rt.h"

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT_ASSERT 0xc500   /* level, assert, INIT */
#define ICR_INIT_DEASSERT 0x8500 /* level, deassert, INIT */
#define ICR_STARTUP 0x0600       /* start-up IPI; low byte = vector */
#define ICR_PENDING (1u << 12)

#define TRAMPOLINE 0x3000 /* SIPI vector 0x03: CS = 0x0300, IP = 0 */
#define MAX_APS 64

/* Shared with the trampoline (absolute addresses, DS = 0 in the AP). */
#define TR_TICKET 0x3f00   /* u16: next ticket */
#define TR_DONE 0x3f02     /* u16: APs that stored their id */
#define TR_ACTION 0x3f04   /* u16: 0 halt, 1 i8042 reset, 2 triple fault */
#define TR_ACTOR 0x3f06    /* u16: the ticket that performs the action */
#define TR_NULL_IDT 0x3f08 /* 6 zero bytes: a real-mode IDT of limit 0 */
#define TR_SLOTS 0x3f10    /* u8[MAX_APS]: APIC id per ticket */

#define STR(x) #x
#define XSTR(x) STR(x)

/* The trampoline: 16-bit real mode, copied to TRAMPOLINE. Kept in .text so the static
 * instruction check sees it. */
__asm__(".pushsection .text.smp_trampoline, \"ax\"\n"
        ".code16\n"
        ".globl smp_tramp_start, smp_tramp_end\n"
        "smp_tramp_start:\n"
        "  cli\n"
        "  xorw %ax, %ax\n"
        "  movw %ax, %ds\n"
        "  movl $1, %eax\n"
        "  cpuid\n"
        "  shrl $24, %ebx\n" /* BL = initial APIC id */
        "  movw $1, %ax\n"
        "  lock xaddw %ax, " XSTR(TR_TICKET) "\n"
        "  movw %ax, %si\n"
        "  cmpw $" XSTR(MAX_APS) ", %si\n"
        "  jae 1f\n"
        "  movb %bl, " XSTR(TR_SLOTS) "(%si)\n"
        "1:\n"
        "  lock incw " XSTR(TR_DONE) "\n"
        "  cmpw " XSTR(TR_ACTOR) ", %si\n"
        "  jne 3f\n"
        "  movw " XSTR(TR_ACTION) ", %ax\n"
        "  cmpw $1, %ax\n"
        "  jne 2f\n"
        "  movb $0xfe, %al\n"
        "  outb %al, $0x64\n"
        "  jmp 3f\n"
        "2:\n"
        "  cmpw $2, %ax\n"
        "  jne 3f\n"
        "  lidt " XSTR(TR_NULL_IDT) "\n"
        "  ud2\n"
        "3:\n"
        "  cli\n"
        "  hlt\n"
        "  jmp 3b\n"
        "smp_tramp_end:\n"
        ".code64\n"
        ".popsection\n");
extern const u8 smp_tramp_start[], smp_tramp_end[];

/* An integer constant address as a pointer GCC cannot see through (no -Warray-bounds noise
 * for low addresses such as the BDA). */
static u64 phys(u64 addr) {
  __asm__("" : "+r"(addr));
  return addr;
}

static volatile u32* lapic(u32 reg) {
  return (volatile u32*)(LAPIC_BASE + reg);
}
static volatile u16* shared16(u64 addr) {
  return (volatile u16*)phys(addr);
}
static volatile u8* shared8(u64 addr) {
  return (volatile u8*)phys(addr);
}

static u8 checksum(const volatile u8* p, u32 len) {
  u8 sum = 0;
  for (u32 i = 0; i < len; i++) sum += p[i];
  return sum;
}

static int prefix_equal(const char* a, const char* b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

static int has_param(const struct boot_params* bp, const char* param) {
  u64 addr = bp->hdr.cmd_line_ptr | ((u64)bp->ext_cmd_line_ptr << 32);
  if (addr == 0 || addr >= (1ull << 30)) return 0;
  const char* s = (const char*)addr;
  size_t n = strlen(param);
  for (u32 i = 0; i < 65536 && s[i]; i++) {
    if ((i == 0 || s[i - 1] == ' ') && prefix_equal(s + i, param, n) &&
        (s[i + n] == ' ' || s[i + n] == 0))
      return 1;
  }
  return 0;
}

/* MP spec 4: the EBDA's first KiB, else the last KiB of base memory, then the BIOS ROM. */
static u64 scan(u64 base, u64 len) {
  for (u64 p = base; p + 16 <= base + len; p += 16) {
    const volatile u8* b = (const volatile u8*)p;
    if (b[0] == '_' && b[1] == 'M' && b[2] == 'P' && b[3] == '_' && b[8] >= 1 &&
        checksum(b, 16u * b[8]) == 0)
      return p;
  }
  return 0;
}

static u64 find_mp_floating_pointer(void) {
  u64 ebda = (u64) * (const volatile u16*)phys(0x40e) << 4; /* BDA: EBDA segment */
  u64 found = 0;
  if (ebda >= 0x80000 && ebda < 0xa0000) found = scan(ebda, 1024);
  if (!found) found = scan(0x9fc00, 1024);
  if (!found) found = scan(0xf0000, 0x10000);
  return found;
}

static void delay(u32 n) {
  for (volatile u32 i = 0; i < n; i++) cpu_relax();
}

static void send_ipi(u8 apic_id, u32 command) {
  *lapic(LAPIC_ICR_HI) = (u32)apic_id << 24;
  *lapic(LAPIC_ICR_LO) = command;
  for (u32 i = 0; i < 1000000 && (*lapic(LAPIC_ICR_LO) & ICR_PENDING); i++) cpu_relax();
}

static void put_line_u(const char* prefix, u64 v) {
  serial_puts(prefix);
  serial_put_dec(v);
  serial_putc('\n');
}

void guest_main(const struct boot_params* bp) {
  u16 action = has_param(bp, "smp.ap_action=reset")         ? 1
               : has_param(bp, "smp.ap_action=triplefault") ? 2
                                                            : 0;

  u64 mpf = find_mp_floating_pointer();
  if (!mpf) {
    serial_puts("mptable none\n");
    reset();
  }
  u32 table = *(const volatile u32*)(mpf + 4);
  const volatile u8* t = (const volatile u8*)(u64)table;
  if (table == 0 || table >= 0x100000 || t[0] != 'P' || t[1] != 'C' || t[2] != 'M' || t[3] != 'P') {
    serial_puts("mptable bad-table\n");
    reset();
  }
  u16 length = *(const volatile u16*)(t + 4);
  if (checksum(t, length) != 0) {
    serial_puts("mptable bad-checksum\n");
    reset();
  }
  u16 entries = *(const volatile u16*)(t + 34);

  /* Processor entries (type 0, 20 bytes; the others are 8). */
  u8 ids[256];
  u32 cpus = 0;
  u8 bsp_id = 0xff;
  const volatile u8* e = t + 44;
  for (u16 i = 0; i < entries && e < t + length; i++) {
    if (e[0] == 0) {
      if ((e[3] & 1) && cpus < sizeof(ids)) {
        ids[cpus++] = e[1];
        if (e[3] & 2) bsp_id = e[1];
      }
      e += 20;
    } else {
      e += 8;
    }
  }
  put_line_u("mptable cpus=", cpus);
  for (u32 i = 0; i < cpus; i++) {
    serial_puts("mptable cpu apic_id=");
    serial_put_dec(ids[i]);
    serial_puts(ids[i] == bsp_id ? " bsp\n" : "\n");
  }
  u8 my_id = *lapic(LAPIC_ID) >> 24;
  put_line_u("bsp apic_id=", my_id);

  /* Trampoline and shared data; the last AP to arrive (ticket cpus-2) does `action`. */
  u32 aps = cpus - 1;
  memcpy((void*)phys(TRAMPOLINE), smp_tramp_start, (size_t)(smp_tramp_end - smp_tramp_start));
  memset((void*)phys(TR_TICKET), 0, TR_SLOTS + MAX_APS - TR_TICKET);
  *shared16(TR_ACTION) = action;
  *shared16(TR_ACTOR) = action ? (u16)(aps - 1) : 0xffff;
  if (action) serial_puts(action == 1 ? "smp ap_action=reset\n" : "smp ap_action=triplefault\n");

  *lapic(LAPIC_SVR) |= 0x100; /* software-enable the LAPIC */
  for (u32 i = 0; i < cpus; i++) {
    if (ids[i] == my_id) continue;
    send_ipi(ids[i], ICR_INIT_ASSERT);
    send_ipi(ids[i], ICR_INIT_DEASSERT);
    delay(10000);
    send_ipi(ids[i], ICR_STARTUP | (TRAMPOLINE >> 12));
    delay(1000);
    send_ipi(ids[i], ICR_STARTUP | (TRAMPOLINE >> 12));
  }
  if (action && aps > 0)
    for (;;) cpu_relax(); /* the actor AP stops the VM */

  u64 spins = 0;
  while (*shared16(TR_DONE) < aps && spins < (1ull << 30)) {
    cpu_relax();
    spins++;
  }
  delay(100000); /* room for an AP that should not exist to show up */
  u32 done = *shared16(TR_DONE);
  u32 tickets = *shared16(TR_TICKET);
  if (done != aps || tickets != aps) {
    serial_puts("smp timeout done=");
    serial_put_dec(done);
    put_line_u(" expected=", aps);
  }
  int ok = done == aps && tickets == aps;
  u8 seen[256];
  memset(seen, 0, sizeof(seen));
  for (u32 i = 0; i < done && i < MAX_APS; i++) {
    u8 id = *shared8(TR_SLOTS + i);
    put_line_u("ap apic_id=", id);
    int listed = 0;
    for (u32 k = 0; k < cpus; k++) listed |= ids[k] == id;
    if (!listed || id == my_id || seen[id]++) ok = 0;
  }
  if (ok) put_line_u("smp ok cpus=", cpus);
  if (has_param(bp, "smp.hold")) {
    serial_puts("smp holding\n"); /* the APs stay halted; the VMM has to stop us */
    for (;;) cpu_relax();
  }
  reset();
}
