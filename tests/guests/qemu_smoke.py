#!/usr/bin/env python3
"""Run the Kiln test guests' bzImages under QEMU TCG and check their output (no KVM needed).

Usage: qemu_smoke.py BUILD_DIR_OF_GUESTS [--qemu qemu-system-x86_64]
Exits 77 (meson "skip") if QEMU is not installed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def run(qemu, image, extra=(), stdin_data=None, delay=3.0, timeout=120):
    cmd = [qemu, "-nographic", "-no-reboot", "-m", "64", "-monitor", "none", "-kernel", image,
           *extra]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    if stdin_data is not None:
        time.sleep(delay)
        p.stdin.write(stdin_data)
        p.stdin.flush()
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    text = out.decode("latin-1").replace("\r", "")
    text = text.split("Booting from ROM..", 1)[-1]
    return [l for l in text.split("\n") if l]


SEABIOS_MICROVM = ["/usr/share/seabios/bios-microvm.bin", "/usr/share/qemu/bios-microvm.bin"]


def microvm_args(qemu, tmp):
    """QEMU arguments for virtio_blk under -M microvm with two virtio-mmio block devices, and
    the disks [(path, data, read_only, serial)]; None if this QEMU cannot run it. microvm's
    auto-kernel-cmdline appends the virtio_mmio.device= entries; qboot does not route the PIC
    to LAPIC LINT0 (no interrupts), so this needs the SeaBIOS microvm build."""
    bios = next((b for b in SEABIOS_MICROVM
                 if os.path.exists(b) and not os.path.realpath(b).endswith("qboot.rom")), None)
    if bios is None:
        return None
    machines = subprocess.run([qemu, "-M", "help"], capture_output=True, text=True).stdout
    if not re.search(r"^microvm\b", machines, re.M):
        return None
    disks = [(os.path.join(tmp, "vblk0.img"), os.urandom(1 << 20), False, "KILNSERIAL0"),
             (os.path.join(tmp, "vblk1.img"), os.urandom(64 << 10), True, "ABCDEFGHIJ0123456789")]
    args = ["-M", "microvm,pic=on,ioapic2=off,rtc=off,acpi=off", "-bios", bios,
            "-global", "virtio-mmio.force-legacy=false", "-device", "i8042"]
    for i, (path, data, ro, serial) in enumerate(disks):
        open(path, "wb").write(data)
        args += ["-drive", "id=vblk%d,file=%s,format=raw,if=none%s" %
                 (i, path, ",readonly=on" if ro else ""),
                 "-device", "virtio-blk-device,drive=vblk%d,serial=%s" % (i, serial)]
    return args, disks


def check_vblk(out, disks):
    """virtio_blk output for `disks` (matched by capacity: QEMU picks the order)."""
    if not out or out[-1] != "VBLK done devices=%d" % len(disks):
        return False
    per_dev = {}
    for line in out[:-1]:
        m = re.match(r"VBLK dev=(\d+) ", line)
        if not m:
            return False
        per_dev.setdefault(int(m.group(1)), []).append(line)
    if sorted(per_dev) != list(range(len(disks))):
        return False
    unused = list(disks)
    for i, lines in per_dev.items():
        m = re.fullmatch(r"VBLK dev=%d id=2 version=2 capacity=(\d+) ro=([01]) irq=\d+" % i, lines[0])
        disk = m and next((d for d in unused if len(d[1]) // 512 == int(m.group(1))), None)
        if not disk or int(m.group(2)) != disk[2]:
            return False
        unused.remove(disk)
        path, data, ro, serial = disk
        want = ["VBLK dev=%d serial=%s" % (i, serial),
                "VBLK dev=%d read status=0 fnv1a64=%016x" % (i, fnv1a64(data[:4096]))]
        if ro:
            want += ["VBLK dev=%d ro-write status=1" % i]
        else:
            want += ["VBLK dev=%d write status=0" % i, "VBLK dev=%d flush status=0" % i,
                     "VBLK dev=%d readback match=1" % i]
            pattern = bytearray((k * 7 + i) & 0xff for k in range(4096))
            pattern[:16] = ("KILN-WRITE-DEV-%d" % i).encode()[:16].ljust(16, b"\0")
            if open(path, "rb").read()[4096:8192] != bytes(pattern):
                return False
        want += ["VBLK dev=%d past-end status=1" % i]
        if lines[1:-1] != want:
            return False
        m = re.fullmatch(r"VBLK dev=%d irqs=(\d+)" % i, lines[-1])
        if not m or int(m.group(1)) < 1:
            return False
    return True


def check_smp(out):
    m = out and re.fullmatch(r"smp ok cpus=(\d+)", out[-1])
    if not m or "mptable cpus=%s" % m.group(1) not in out:
        return False
    aps = [l for l in out if l.startswith("ap apic_id=")]
    return len(aps) == int(m.group(1)) - 1 and len(set(aps)) == len(aps)


def main():
    args = sys.argv[1:]
    qemu = "qemu-system-x86_64"
    if "--qemu" in args:
        i = args.index("--qemu")
        qemu = args[i + 1]
        del args[i:i + 2]
    d = args[0]
    if not shutil.which(qemu):
        print("qemu not found, skipping")
        return 77
    img = lambda n: os.path.join(d, "guest-%s.bzimage" % n)
    tmp = tempfile.mkdtemp()
    initrd = os.path.join(tmp, "initrd")
    data = os.urandom(123457)
    open(initrd, "wb").write(data)
    checks = [
        ("hello", [], None, lambda o: o == ["KILN-GUEST hello", "Hello from a Kiln test guest"]),
        ("cmdline", ["-append", "console=ttyS0 a=b  c"], None,
         lambda o: o == ["CMDLINE:console=ttyS0 a=b  c"]),
        ("e820", [], None,
         lambda o: o and o[-1] == "E820-END %d" % (len(o) - 1) and len(o) > 2 and
         all(re.fullmatch(r"E820 0x[0-9a-f]{16} 0x[0-9a-f]{16} \d+", l) for l in o[:-1])),
        ("initrd", ["-initrd", initrd], None,
         lambda o: len(o) == 1 and re.fullmatch(
             r"INITRD addr=0x[0-9a-f]+ size=%d fnv1a64=%016x" % (len(data), fnv1a64(data)), o[0])),
        ("initrd", [], None, lambda o: o == ["INITRD none"]),
        ("rngseed", [], None, lambda o: len(o) == 1 and o[0].startswith("RNGSEED ")),
        ("serial_in", [], b"hi there\n", lambda o: o == ["READY", "GOT:hi there"]),
        ("timer", [], None,
         lambda o: len(o) == 1 and re.fullmatch(r"TIMER ticks=\d+", o[0]) and
         int(o[0].split("=")[1]) >= 20),
        ("ring3loop", [], None, lambda o: o == ["RING3 cpl=3 iterations=100000000 done"]),
        ("triplefault", [], None, lambda o: o == ["TRIPLEFAULT now"]),
        ("virtio_blk", [], None, lambda o: o == ["VBLK done devices=0"]),
        ("virtio_net", [], None, lambda o: o == ["VNET none"]),
        ("virtio_blk", ["-append", "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=junk"],
         None, lambda o: len(o) == 3 and re.fullmatch(r"VBLK dev=0 bad-magic=0x[0-9a-f]{8}", o[0]) and
         o[1:] == ["VBLK dev=1 bad-param", "VBLK done devices=2"]),
        # SeaBIOS may list only the BSP in its MP table (it does under TCG here): the check is
        # that every AP the table lists reports once; Kiln's e2e tests cover 2 and 4 vCPUs.
        ("smp", ["-smp", "2"], None, check_smp),
    ]
    vblk = microvm_args(qemu, tmp)
    if vblk:
        vblk_args, vblk_disks = vblk
        checks.append(("virtio_blk", vblk_args, None, lambda o: check_vblk(o, vblk_disks)))
    else:
        print("virtio_blk   skip (no -M microvm or no SeaBIOS bios-microvm.bin): devices not run")
    failed = 0
    for name, extra, stdin_data, ok in checks:
        out = run(qemu, img(name), extra, stdin_data)
        good = bool(ok(out))
        failed += not good
        print("%-12s %s %r" % (name, "ok  " if good else "FAIL", out))
    shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
