/*
 * ACPI tables as a guest OS sees them, all in ring 3: the RSDP from boot_params.acpi_rsdp_addr
 * and from a scan of 0xe0000-0xfffff, every checksum, the MADT's local APICs and IOAPIC, and the
 * DSDT's devices (a small AML walker for the terms Kiln emits). Then power-off through the
 * FADT's sleep control register with \_S5's SLP_TYP, or with `acpi_test=reset` on the command
 * line a reset through the FADT's reset register. Output format: see README.md.
 */
#include "runtime/rt.h"

#define SPIN_LIMIT (1ull << 30)

static u32 errors;

static u16 rd16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 rd32(const u8 *p) { return rd16(p) | (u32)rd16(p + 2) << 16; }
static u64 rd64(const u8 *p) { return rd32(p) | (u64)rd32(p + 4) << 32; }

static int same(const void *a, const char *b, size_t n) {
    const u8 *p = a;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (u8)b[i]) return 0;
    return 1;
}

static u8 sum(const u8 *p, u32 n) {
    u8 s = 0;
    for (u32 i = 0; i < n; i++) s = (u8)(s + p[i]);
    return s;
}

static void fail(const char *what) {
    serial_puts("ACPI error ");
    serial_puts(what);
    serial_putc('\n');
    errors++;
}

static void put_sig(const u8 *p) { serial_write(p, 4); }

/* A table below 4 GiB with a sane length, its checksum reported. NULL if unusable. */
static const u8 *table_at(u64 addr, const char *what) {
    if (addr == 0 || addr >= (1ull << 32) - 36) {
        fail(what);
        return NULL;
    }
    const u8 *t = (const u8 *)addr;
    u32 len = rd32(t + 4);
    if (len < 36 || len > (1u << 20)) {
        fail(what);
        return NULL;
    }
    serial_puts("ACPI table ");
    put_sig(t);
    serial_puts(" addr=0x");
    serial_put_hex_min(addr);
    serial_puts(" len=");
    serial_put_dec(len);
    serial_puts(sum(t, len) == 0 ? " checksum=ok\n" : " checksum=bad\n");
    if (sum(t, len) != 0) errors++;
    return t;
}

static const u8 *find_rsdp_by_scan(void) {
    for (u64 a = 0xe0000; a < 0x100000; a += 16) {
        const u8 *p = (const u8 *)a;
        if (same(p, "RSD PTR ", 8) && sum(p, 20) == 0) return p;
    }
    return NULL;
}

/* ---- MADT ---- */
static void walk_madt(const u8 *m) {
    u32 len = rd32(m + 4), n = 0;
    serial_puts("MADT lapic-addr=0x");
    serial_put_hex_min(rd32(m + 36));
    serial_puts(" flags=");
    serial_put_dec(rd32(m + 40));
    serial_putc('\n');
    serial_puts("MADT apic-ids=");
    for (u32 off = 44; off + 2 <= len && m[off + 1] >= 2; off += m[off + 1]) {
        const u8 *e = m + off;
        if (e[0] == 0 && (rd32(e + 4) & 1)) {
            serial_puts(n++ ? "," : "");
            serial_put_dec(e[3]);
        } else if (e[0] == 9 && (rd32(e + 8) & 1)) {
            serial_puts(n++ ? "," : "");
            serial_put_dec(rd32(e + 4));
        }
    }
    serial_putc('\n');
    serial_puts("MADT cpus=");
    serial_put_dec(n);
    serial_putc('\n');
    for (u32 off = 44; off + 2 <= len && m[off + 1] >= 2; off += m[off + 1]) {
        const u8 *e = m + off;
        if (e[0] == 1) {
            serial_puts("MADT ioapic id=");
            serial_put_dec(e[2]);
            serial_puts(" addr=0x");
            serial_put_hex_min(rd32(e + 4));
            serial_puts(" gsi-base=");
            serial_put_dec(rd32(e + 8));
            serial_putc('\n');
        } else if (e[0] == 2) {
            serial_puts("MADT override irq=");
            serial_put_dec(e[3]);
            serial_puts(" gsi=");
            serial_put_dec(rd32(e + 4));
            serial_puts(" flags=0x");
            serial_put_hex_min(rd16(e + 8));
            serial_putc('\n');
        }
    }
}

/* ---- DSDT: a walker for Scope, Device, Name, and the data objects Kiln emits ---- */
struct aml {
    const u8 *p, *end;
    int bad;
};

static u32 pkg_length(struct aml *a, const u8 **body_end) {
    const u8 *start = a->p;
    if (a->p >= a->end) {
        a->bad = 1;
        return 0;
    }
    u8 lead = *a->p++;
    u32 follow = lead >> 6, len = follow ? (lead & 0x0f) : (lead & 0x3f);
    for (u32 i = 0; i < follow; i++) {
        if (a->p >= a->end) {
            a->bad = 1;
            return 0;
        }
        len |= (u32)*a->p++ << (4 + 8 * i);
    }
    if (len > (u32)(a->end - start)) a->bad = 1;
    *body_end = a->bad ? a->end : start + len;
    return len;
}

/* Skips a NameString; the last segment goes to seg[4] (zeros for NullName). */
static void name_string(struct aml *a, u8 seg[4]) {
    u32 count = 1;
    memset(seg, 0, 4);
    while (a->p < a->end && (*a->p == '\\' || *a->p == '^')) a->p++;
    if (a->p >= a->end) {
        a->bad = 1;
        return;
    }
    if (*a->p == 0x00) {
        a->p++;
        return;
    } else if (*a->p == 0x2e) {
        a->p++;
        count = 2;
    } else if (*a->p == 0x2f) {
        a->p++;
        count = a->p < a->end ? *a->p++ : 0;
    }
    if ((u64)(a->end - a->p) < 4ull * count) {
        a->bad = 1;
        return;
    }
    if (count) memcpy(seg, a->p + 4 * (count - 1), 4);
    a->p += 4 * count;
}

struct object {
    int kind; /* 0 none, 1 integer, 2 string, 3 buffer, 4 package */
    u64 value;
    const u8 *data; /* string / buffer bytes, package elements */
    u32 len;
};

static void data_object(struct aml *a, struct object *o) {
    const u8 *body_end;
    memset(o, 0, sizeof(*o));
    if (a->p >= a->end) {
        a->bad = 1;
        return;
    }
    u8 op = *a->p++;
    u32 n = 0;
    o->kind = 1;
    switch (op) {
    case 0x00: o->value = 0; return;
    case 0x01: o->value = 1; return;
    case 0xff: o->value = ~0ull; return;
    case 0x0a: n = 1; break;
    case 0x0b: n = 2; break;
    case 0x0c: n = 4; break;
    case 0x0e: n = 8; break;
    case 0x0d:
        o->kind = 2;
        o->data = a->p;
        while (a->p < a->end && *a->p) a->p++;
        o->len = (u32)(a->p - o->data);
        if (a->p >= a->end) a->bad = 1;
        a->p++;
        return;
    case 0x11: {
        struct object size;
        o->kind = 3;
        pkg_length(a, &body_end);
        struct aml inner = {a->p, body_end, 0};
        data_object(&inner, &size);
        if (inner.bad || size.kind != 1 || size.value > (u64)(body_end - inner.p)) a->bad = 1;
        o->data = inner.p;
        o->len = (u32)size.value;
        a->p = body_end;
        return;
    }
    case 0x12:
        o->kind = 4;
        pkg_length(a, &body_end);
        o->data = a->p;
        o->len = (u32)(body_end - a->p);
        a->p = body_end;
        return;
    default:
        a->bad = 1;
        return;
    }
    if ((u64)(a->end - a->p) < n) {
        a->bad = 1;
        return;
    }
    for (u32 i = 0; i < n; i++) o->value |= (u64)a->p[i] << (8 * i);
    a->p += n;
}

static void put_eisa(u32 raw) {
    u32 v = (raw >> 24) | ((raw >> 8) & 0xff00) | ((raw << 8) & 0xff0000) | (raw << 24);
    char id[7];
    for (int i = 0; i < 3; i++) id[i] = (char)('@' + ((v >> (26 - 5 * i)) & 0x1f));
    for (int i = 3; i < 7; i++) id[i] = "0123456789ABCDEF"[(v >> (4 * (6 - i))) & 0xf];
    serial_write(id, 7);
}

static u32 virtio_devices;
static int s5_type = -1;

/* One device's _CRS resource template: Memory32Fixed, Extended Interrupt, IRQ, IO, End Tag. */
static void print_resources(const u8 *p, u32 len) {
    const u8 *end = p + len;
    while (p < end) {
        u8 tag = p[0];
        u32 item;
        if (tag & 0x80) {
            if (end - p < 3) break;
            item = 3 + rd16(p + 1);
        } else {
            item = 1 + (tag & 7);
        }
        if ((u32)(end - p) < item) break;
        if (tag == 0x86) {
            serial_puts(" base=0x");
            serial_put_hex_min(rd32(p + 4));
            serial_puts(" size=0x");
            serial_put_hex_min(rd32(p + 8));
        } else if (tag == 0x89 && p[4] >= 1) {
            serial_puts(" irq=");
            serial_put_dec(rd32(p + 5));
            serial_puts((p[3] & 2) ? " edge" : " level");
            serial_puts((p[3] & 4) ? " active-low" : " active-high");
        } else if ((tag & 0xf8) == 0x20) {
            u16 mask = rd16(p + 1);
            for (int i = 0; i < 16; i++)
                if (mask & (1u << i)) {
                    serial_puts(" irq=");
                    serial_put_dec((u64)i);
                }
        } else if (tag == 0x47) {
            serial_puts(" io=0x");
            serial_put_hex_min(rd16(p + 2));
            serial_puts(" len=");
            serial_put_dec(p[7]);
        } else if (tag == 0x79) {
            if (sum(end - len, len) != 0 && p[1] != 0) serial_puts(" crs-checksum=bad");
            return;
        }
        p += item;
    }
    serial_puts(" crs-no-end-tag");
    errors++;
}

static void device_body(struct aml *a, const u8 name[4]) {
    struct object hid = {0}, crs = {0}, uid = {0};
    while (a->p < a->end && !a->bad) {
        u8 seg[4];
        struct object o;
        if (*a->p != 0x08) {
            a->bad = 1;
            break;
        }
        a->p++;
        name_string(a, seg);
        data_object(a, &o);
        if (same(seg, "_HID", 4)) hid = o;
        if (same(seg, "_UID", 4)) uid = o;
        if (same(seg, "_CRS", 4)) crs = o;
    }
    if (hid.kind == 2 && hid.len == 8 && same(hid.data, "LNRO0005", 8)) {
        serial_puts("virtio-mmio");
        virtio_devices++;
    } else {
        serial_puts("DSDT device ");
        serial_write(name, 4);
        serial_puts(" hid=");
        if (hid.kind == 1)
            put_eisa((u32)hid.value);
        else if (hid.kind == 2)
            serial_write(hid.data, hid.len);
    }
    if (uid.kind == 1) {
        serial_puts(" uid=");
        serial_put_dec(uid.value);
    }
    if (crs.kind == 3) print_resources(crs.data, crs.len);
    serial_putc('\n');
}

static void term_list(struct aml *a) {
    while (a->p < a->end && !a->bad) {
        const u8 *body_end;
        u8 seg[4];
        u8 op = *a->p++;
        if (op == 0x10) { /* Scope */
            pkg_length(a, &body_end);
            name_string(a, seg);
            struct aml inner = {a->p, body_end, 0};
            term_list(&inner);
            a->bad |= inner.bad;
            a->p = body_end;
        } else if (op == 0x5b && a->p < a->end && *a->p == 0x82) { /* Device */
            a->p++;
            pkg_length(a, &body_end);
            name_string(a, seg);
            struct aml inner = {a->p, body_end, 0};
            device_body(&inner, seg);
            a->bad |= inner.bad;
            a->p = body_end;
        } else if (op == 0x08) { /* Name */
            struct object o;
            name_string(a, seg);
            data_object(a, &o);
            if (same(seg, "_S5_", 4) && o.kind == 4 && o.len >= 2) {
                struct aml pkg = {o.data + 1, o.data + o.len, 0};
                struct object first;
                data_object(&pkg, &first);
                if (!pkg.bad && first.kind == 1) s5_type = (int)first.value;
            }
        } else {
            serial_puts("DSDT unknown opcode 0x");
            serial_put_hex(op, 2);
            serial_putc('\n');
            a->bad = 1;
        }
    }
}

static void print_cmdline(const struct boot_params *bp) {
    u64 addr = bp->hdr.cmd_line_ptr | ((u64)bp->ext_cmd_line_ptr << 32);
    serial_puts("CMDLINE:");
    if (addr != 0 && addr < (1ull << 30)) {
        const char *p = (const char *)addr;
        for (u32 i = 0; i < 65536 && p[i]; i++) serial_putc(p[i]);
    }
    serial_putc('\n');
}

static int cmdline_has(const struct boot_params *bp, const char *word) {
    u64 addr = bp->hdr.cmd_line_ptr | ((u64)bp->ext_cmd_line_ptr << 32);
    if (addr == 0 || addr >= (1ull << 30)) return 0;
    const char *p = (const char *)addr;
    size_t n = strlen(word);
    for (u32 i = 0; i < 65536 && p[i]; i++)
        if ((i == 0 || p[i - 1] == ' ') && same(p + i, word, n) && (p[i + n] == ' ' || !p[i + n]))
            return 1;
    return 0;
}

/* An 8-bit I/O register from a FADT Generic Address Structure; 0 if it is not one. */
static u16 io_register(const u8 *gas) {
    if (gas[0] != 1 || rd64(gas + 4) == 0 || rd64(gas + 4) > 0xffff) return 0;
    return (u16)rd64(gas + 4);
}

static void __attribute__((noreturn)) die(void) {
    /* Not the i8042 reset: a guest whose ACPI request did nothing must not exit 0. */
    serial_puts("ACPI failed errors=");
    serial_put_dec(errors);
    serial_putc('\n');
    __asm__ volatile("ud2");
    for (;;) cpu_relax();
}

void guest_main(const struct boot_params *bp) {
    print_cmdline(bp);
    u64 rsdp_addr = bp->acpi_rsdp_addr;
    serial_puts("ACPI rsdp=0x");
    serial_put_hex_min(rsdp_addr);
    serial_putc('\n');
    const u8 *scanned = find_rsdp_by_scan();
    serial_puts("ACPI rsdp-scan=0x");
    serial_put_hex_min((u64)scanned);
    serial_putc('\n');
    if (rsdp_addr == 0 || rsdp_addr >= (1ull << 32)) {
        fail("no-rsdp");
        die();
    }
    const u8 *rsdp = (const u8 *)rsdp_addr;
    if (!same(rsdp, "RSD PTR ", 8)) fail("rsdp-signature");
    serial_puts("ACPI rsdp revision=");
    serial_put_dec(rsdp[15]);
    serial_puts(sum(rsdp, 20) == 0 ? " checksum=ok" : " checksum=bad");
    serial_puts(sum(rsdp, 36) == 0 ? " ext-checksum=ok\n" : " ext-checksum=bad\n");
    if (sum(rsdp, 20) != 0 || sum(rsdp, 36) != 0) errors++;
    if ((u64)scanned != rsdp_addr) fail("scan-mismatch");

    const u8 *xsdt = table_at(rd64(rsdp + 24), "xsdt");
    const u8 *fadt = NULL, *madt = NULL;
    if (xsdt) {
        if (!same(xsdt, "XSDT", 4)) fail("xsdt-signature");
        for (u32 off = 36; off + 8 <= rd32(xsdt + 4); off += 8) {
            const u8 *t = table_at(rd64(xsdt + off), "xsdt-entry");
            if (t && same(t, "FACP", 4)) fadt = t;
            if (t && same(t, "APIC", 4)) madt = t;
        }
    }
    if (!fadt || rd32(fadt + 4) < 268) {
        fail("no-fadt");
        die();
    }
    serial_puts("FADT revision=");
    serial_put_dec(fadt[8]);
    serial_putc('.');
    serial_put_dec(fadt[131]);
    serial_puts(" flags=0x");
    serial_put_hex(rd32(fadt + 112), 8);
    serial_putc('\n');
    if (madt)
        walk_madt(madt);
    else
        fail("no-madt");

    u64 dsdt_addr = rd64(fadt + 140) ? rd64(fadt + 140) : rd32(fadt + 40);
    const u8 *dsdt = table_at(dsdt_addr, "dsdt");
    if (dsdt && same(dsdt, "DSDT", 4)) {
        struct aml a = {dsdt + 36, dsdt + rd32(dsdt + 4), 0};
        term_list(&a);
        if (a.bad) fail("dsdt-parse");
    } else {
        fail("no-dsdt");
    }
    serial_puts("DSDT virtio-devices=");
    serial_put_dec(virtio_devices);
    serial_puts(" s5=");
    if (s5_type < 0)
        serial_puts("none");
    else
        serial_put_dec((u64)s5_type);
    serial_putc('\n');

    u16 sleep_control = io_register(fadt + 244), reset_port = io_register(fadt + 116);
    serial_puts("ACPI done errors=");
    serial_put_dec(errors);
    serial_putc('\n');
    if (errors) die();
    if (cmdline_has(bp, "acpi_test=reset")) {
        if (!reset_port || !(rd32(fadt + 112) & (1u << 10))) {
            fail("no-reset-register");
            die();
        }
        serial_puts("ACPI reset port=0x");
        serial_put_hex_min(reset_port);
        serial_puts(" value=0x");
        serial_put_hex_min(fadt[128]);
        serial_putc('\n');
        outb(reset_port, fadt[128]);
    } else {
        if (!sleep_control || s5_type < 0) {
            fail("no-sleep-control");
            die();
        }
        u8 value = (u8)(((s5_type & 7) << 2) | 0x20); /* SLP_TYP | SLP_EN */
        serial_puts("ACPI poweroff port=0x");
        serial_put_hex_min(sleep_control);
        serial_puts(" value=0x");
        serial_put_hex_min(value);
        serial_putc('\n');
        outb(sleep_control, value);
    }
    for (u64 i = 0; i < SPIN_LIMIT; i++) cpu_relax();
    serial_puts("ACPI still running\n");
    die();
}
