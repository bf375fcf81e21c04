#!/usr/bin/env python3
"""Static checks of built Kiln test guests (stdlib + objdump only).

Usage: verify_guests.py [--objdump objdump] GUEST.elf|GUEST.bzimage ...

ELF:     ELF64 x86-64, e_entry 0x100200, exactly one PT_LOAD with p_paddr == p_vaddr == 0x100000,
         and no instruction the PVM ring-0 emulator cannot handle (or that needs FPU/SSE state).
bzImage: setup header fields (boot protocol 2.15) as produced by mkbzimage.py, and the
         protected-mode part identical to the ELF's PT_LOAD bytes when the .elf sits next to it.
Exits non-zero on the first failing file after printing every problem.
"""
import os
import re
import struct
import subprocess
import sys

FORBIDDEN = re.compile(
    r"\b(popcnt|xsave\w*|xrstor\w*|int3|clac|stac|fwait|vmcall|vmmcall|endbr64|endbr32|"
    r"fxsave\w*|fxrstor\w*|ldmxcsr|stmxcsr)\b|%[xyz]mm\d|%st\b|%mm\d")


def check_elf(path, objdump, problems):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        problems.append("not ELF64 LE")
        return None
    e_machine, = struct.unpack_from("<H", data, 0x12)
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    if e_machine != 62:
        problems.append("e_machine %d != EM_X86_64" % e_machine)
    if e_entry != 0x100200:
        problems.append("e_entry %#x != 0x100200" % e_entry)
    loads = []
    for i in range(e_phnum):
        p = struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p[0] == 1:
            loads.append(p)
    if len(loads) != 1:
        problems.append("%d PT_LOAD segments (want 1)" % len(loads))
        return None
    _t, _f, off, vaddr, paddr, filesz, memsz, _a = loads[0]
    if paddr != 0x100000 or vaddr != 0x100000:
        problems.append("PT_LOAD paddr %#x vaddr %#x (want 0x100000)" % (paddr, vaddr))
    if memsz < filesz:
        problems.append("p_memsz < p_filesz")
    dis = subprocess.run([objdump, "-d", "--no-show-raw-insn", path], check=True,
                         capture_output=True, text=True).stdout
    for line in dis.splitlines():
        if "\t" in line and FORBIDDEN.search(line.split("\t", 1)[1]):
            problems.append("forbidden instruction: " + line.strip())
    return data[off:off + filesz], memsz


def check_bzimage(path, problems):
    d = open(path, "rb").read()
    u8 = lambda o: d[o]
    u16 = lambda o: struct.unpack_from("<H", d, o)[0]
    u32 = lambda o: struct.unpack_from("<I", d, o)[0]
    u64 = lambda o: struct.unpack_from("<Q", d, o)[0]
    setup_sects = u8(0x1f1) or 4
    pm_off = (setup_sects + 1) * 512
    pm = d[pm_off:]
    want = {
        "boot_flag": (u16(0x1fe), 0xaa55),
        "jump (short jmp opcode)": (d[0x200], 0xeb),
        "header": (d[0x202:0x206], b"HdrS"),
        "version": (u16(0x206), 0x020f),
        "type_of_loader": (u8(0x210), 0),
        "loadflags": (u8(0x211), 0x01),
        "code32_start": (u32(0x214), 0x100000),
        "initrd_addr_max": (u32(0x22c), 0x7fffffff),
        "kernel_alignment": (u32(0x230), 0x200000),
        "relocatable_kernel": (u8(0x234), 0),
        "xloadflags": (u16(0x236), 0x0001),
        "cmdline_size": (u32(0x238), 2047),
        "pref_address": (u64(0x258), 0x100000),
        "syssize": (u32(0x1f4), (len(pm) + 15) // 16),
    }
    for name, (got, exp) in want.items():
        if got != exp:
            problems.append("%s = %r, want %r" % (name, got, exp))
    if not 1 <= u8(0x235) <= 21:
        problems.append("min_alignment %d out of range" % u8(0x235))
    init_size = u32(0x260)
    if init_size < len(pm) or init_size % 4096:
        problems.append("init_size %#x not >= image and page aligned" % init_size)
    if len(d) % 16:
        problems.append("file size not a multiple of 16")
    return pm, init_size


def main():
    args = sys.argv[1:]
    objdump = "objdump"
    if args[:1] == ["--objdump"]:
        objdump, args = args[1], args[2:]
    failed = False
    for path in args:
        problems = []
        if path.endswith(".bzimage"):
            pm, init_size = check_bzimage(path, problems)
            elf = path[:-len(".bzimage")] + ".elf"
            if os.path.exists(elf):
                r = check_elf(elf, objdump, [])
                if r:
                    img, memsz = r
                    if pm.rstrip(b"\0") != img.rstrip(b"\0") or len(pm) - len(img) >= 16:
                        problems.append("protected-mode part differs from %s PT_LOAD" % elf)
                    if init_size < memsz:
                        problems.append("init_size %#x < p_memsz %#x" % (init_size, memsz))
        else:
            check_elf(path, objdump, problems)
        for p in problems:
            print("%s: %s" % (path, p))
        if problems:
            failed = True
        else:
            print("%s: ok" % path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
