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
    ]
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
