#!/usr/bin/env python3
"""Wrap a Kiln test guest into a Linux bzImage (boot protocol 2.15).

Usage: mkbzimage.py --elf guest.elf --bin guest.bin -o guest.bzimage

--bin is the flat image (objcopy -O binary of the ELF, i.e. the bytes of its single PT_LOAD
from p_paddr 0x100000); --elf supplies the in-memory size (p_memsz, for init_size) and is
checked for p_paddr 0x100000 / e_entry 0x100200.  If --bin is omitted, the PT_LOAD file bytes
are taken from the ELF directly (equivalent for a single-segment image).

File layout: setup sectors ((setup_sects + 1) * 512 bytes) carrying the setup header at 0x1f1,
followed by the protected-mode image, which loaders put at code32_start = 0x100000.  The
64-bit entry point is at +0x200 (Linux 64-bit boot protocol); the 32-bit entry point at +0 is
used by the real-mode setup stub below (QEMU -kernel and other loaders that run setup code).
Stdlib only.
"""
import argparse
import struct
import sys

LOAD_ADDR = 0x100000
ENTRY64 = LOAD_ADDR + 0x200

# Real-mode setup code, assembled from bzstub.S: (offset relative to file offset 0x200, bytes).
# 0x000: short jump over the header to 0x070; 0x070: near jump to 0xe00 (file offset 0x1000,
# above the boot_params e820_table the stub fills in); 0xe00: E820, A20, protected mode,
# ESI = boot_params, ljmp to 0x100000.
SETUP_STUB = [
    (0x000, "eb6e"),
    (0x070, "e98d0d"),
    (0xe00,
     "fafc8cc883e8208ed88ec06631db31edbfd00266b820e8000066b91400000066ba50414d53cd"
     "157217663d50414d53750f4583c71481fd800073056685db75d389e8a2e801e4920c0224fee6"
     "926631c08cd866c1e0046689c66605901000002e66a3aa0e2e660f0116a80e0f20c06683c801"
     "0f22c0b810008ed88ec08ed08ee08ee866ea0000100008008db4000066900000000000000000"
     "ffff0000009acf00ffff00000092cf00170000000000"),
]

# struct setup_header field offsets (absolute, within boot_params / the bzImage file).
HDR = {
    "setup_sects": (0x1f1, "B"),
    "root_flags": (0x1f2, "H"),
    "syssize": (0x1f4, "I"),
    "ram_size": (0x1f8, "H"),
    "vid_mode": (0x1fa, "H"),
    "root_dev": (0x1fc, "H"),
    "boot_flag": (0x1fe, "H"),
    "jump": (0x200, "H"),
    "header": (0x202, "I"),
    "version": (0x206, "H"),
    "realmode_swtch": (0x208, "I"),
    "start_sys_seg": (0x20c, "H"),
    "kernel_version": (0x20e, "H"),
    "type_of_loader": (0x210, "B"),
    "loadflags": (0x211, "B"),
    "setup_move_size": (0x212, "H"),
    "code32_start": (0x214, "I"),
    "ramdisk_image": (0x218, "I"),
    "ramdisk_size": (0x21c, "I"),
    "bootsect_kludge": (0x220, "I"),
    "heap_end_ptr": (0x224, "H"),
    "ext_loader_ver": (0x226, "B"),
    "ext_loader_type": (0x227, "B"),
    "cmd_line_ptr": (0x228, "I"),
    "initrd_addr_max": (0x22c, "I"),
    "kernel_alignment": (0x230, "I"),
    "relocatable_kernel": (0x234, "B"),
    "min_alignment": (0x235, "B"),
    "xloadflags": (0x236, "H"),
    "cmdline_size": (0x238, "I"),
    "hardware_subarch": (0x23c, "I"),
    "hardware_subarch_data": (0x240, "Q"),
    "payload_offset": (0x248, "I"),
    "payload_length": (0x24c, "I"),
    "setup_data": (0x250, "Q"),
    "pref_address": (0x258, "Q"),
    "init_size": (0x260, "I"),
    "handover_offset": (0x264, "I"),
    "kernel_info_offset": (0x268, "I"),
}
HDR_END = 0x26c

LOADED_HIGH = 0x01
XLF_KERNEL_64 = 0x01


def parse_elf(data):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit("mkbzimage: not a little-endian ELF64 file")
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 0x18)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    loads = []
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((p_offset, p_paddr, p_filesz, p_memsz))
    if len(loads) != 1:
        sys.exit("mkbzimage: expected exactly one PT_LOAD, found %d" % len(loads))
    return e_entry, loads[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elf", required=True)
    ap.add_argument("--bin")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()

    elf = open(args.elf, "rb").read()
    entry, (p_offset, p_paddr, p_filesz, p_memsz) = parse_elf(elf)
    if p_paddr != LOAD_ADDR:
        sys.exit("mkbzimage: PT_LOAD p_paddr is %#x, expected %#x" % (p_paddr, LOAD_ADDR))
    if entry != ENTRY64:
        sys.exit("mkbzimage: e_entry is %#x, expected %#x" % (entry, ENTRY64))
    if args.bin:
        kernel = open(args.bin, "rb").read()
        if kernel != elf[p_offset:p_offset + p_filesz]:
            sys.exit("mkbzimage: %s does not match the ELF's PT_LOAD contents" % args.bin)
    else:
        kernel = elf[p_offset:p_offset + p_filesz]
    # Pad the protected-mode part to whole 16-byte paragraphs (syssize is in paragraphs).
    kernel += b"\0" * (-len(kernel) % 16)

    stub_end = max(off + len(bytes.fromhex(h)) for off, h in SETUP_STUB) + 0x200
    setup_sects = (stub_end + 511) // 512 - 1
    setup = bytearray((setup_sects + 1) * 512)
    for off, h in SETUP_STUB:
        b = bytes.fromhex(h)
        setup[0x200 + off:0x200 + off + len(b)] = b

    init_size = max(p_memsz, len(kernel))
    init_size = (init_size + 0xfff) & ~0xfff

    fields = {
        "setup_sects": setup_sects,
        "root_flags": 0,
        "syssize": len(kernel) // 16,
        "ram_size": 0,
        "vid_mode": 0xffff,  # NORMAL_VGA
        "root_dev": 0,
        "boot_flag": 0xaa55,
        "jump": struct.unpack_from("<H", setup, 0x200)[0],
        "header": struct.unpack("<I", b"HdrS")[0],
        "version": 0x020f,
        "realmode_swtch": 0,
        "start_sys_seg": 0x1000,
        "kernel_version": 0,
        "type_of_loader": 0,
        "loadflags": LOADED_HIGH,
        "setup_move_size": 0x8000,
        "code32_start": LOAD_ADDR,
        "ramdisk_image": 0,
        "ramdisk_size": 0,
        "bootsect_kludge": 0,
        "heap_end_ptr": 0,
        "ext_loader_ver": 0,
        "ext_loader_type": 0,
        "cmd_line_ptr": 0,
        "initrd_addr_max": 0x7fffffff,
        "kernel_alignment": 0x200000,
        "relocatable_kernel": 0,
        "min_alignment": 21,  # log2(kernel_alignment): no relaxed alignment
        "xloadflags": XLF_KERNEL_64,
        "cmdline_size": 2047,
        "hardware_subarch": 0,
        "hardware_subarch_data": 0,
        "payload_offset": 0,
        "payload_length": 0,
        "setup_data": 0,
        "pref_address": LOAD_ADDR,
        "init_size": init_size,
        "handover_offset": 0,
        "kernel_info_offset": 0,
    }
    for name, (off, fmt) in HDR.items():
        struct.pack_into("<" + fmt, setup, off, fields[name])

    with open(args.output, "wb") as f:
        f.write(bytes(setup))
        f.write(kernel)


if __name__ == "__main__":
    main()
