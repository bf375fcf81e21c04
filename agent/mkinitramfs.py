#!/usr/bin/env python3
"""Writes the agent's initramfs: a newc cpio archive (what the kernel unpacks as its initial
root) holding kiln-agent as /init, the mount points it needs and /dev/console (the kernel opens
it for init's stdio before any devtmpfs exists). No root privileges or device nodes on the host
are needed: the archive only describes them. Timestamps are 0, so the output is reproducible.

    mkinitramfs.py AGENT OUT"""
import stat
import sys


def entry(name, mode, data=b"", rdev=(0, 0), ino=[0]):
    ino[0] += 1
    namez = name.encode() + b"\0"
    fields = [ino[0], mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
              rdev[0], rdev[1], len(namez), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = head + namez
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    agent, dest = sys.argv[1:]
    with open(agent, "rb") as f:
        init = f.read()
    archive = b"".join([
        entry("dev", stat.S_IFDIR | 0o755),
        entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        entry("proc", stat.S_IFDIR | 0o555),
        entry("newroot", stat.S_IFDIR | 0o755),
        entry("init", stat.S_IFREG | 0o755, init),
        entry("TRAILER!!!", 0),
    ])
    archive += b"\0" * (-len(archive) % 512)
    with open(dest, "wb") as f:
        f.write(archive)


if __name__ == "__main__":
    main()
