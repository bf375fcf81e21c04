#!/usr/bin/env python3
"""Snapshots beside a cold boot, in one run: creating a Full and a Diff snapshot of a running
guest (128 MiB and 1 GiB), restoring it in a new process, and the cold boot of the same guest
as the baseline. Prints figures; never a test.

  snapshot_bench.py [--runs N] [--sizes 128,1024]

Runs where /dev/kvm works (scripts/bench.sh --snapshot runs it inside the nested-KVM VM where
it does not: absolute times there are emulated, the ratios are the result). The guest is
tests/guests/snapshot.c (a 4 MiB pattern in memory, the PIT at 1 kHz, a line per 100 ticks).

  process start    spawn `kiln --version` until it exited (what any of these pays first)
  cold boot        spawn `kiln run` to the guest's first line ("SNAP ready")
  create Full      PUT /snapshot/create of the paused guest, until the reply
  create Diff      the same with snapshot_type Diff, two lines after the Full one
  restore          spawn `kiln --restore` until Kiln logs "snapshot: restored" (host side:
                   process start, state file, memory mapped, vCPUs and devices set)
  restore to run   until the restored guest's next line (it waits up to 100 ticks for it)
  restored RSS     the restored process's resident memory then (lazy: pages load on touch)
"""
import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmm_bench as vb  # noqa: E402  (helpers: spawn, stop, wait_connect, http, wait_output)

GUEST = os.path.join(vb.GUESTS, "guest-snapshot.elf")
now = time.monotonic


def api(sock_path, proc, method, path, body):
    s = vb.wait_connect(sock_path, proc, now() + 30)
    try:
        t0 = now()
        reply = vb.http(s, method, path, body)
        ms = (now() - t0) * 1000
        status = int(reply.split(b" ", 2)[1])
        if status >= 300:
            raise RuntimeError("%s %s: %r" % (method, path, reply[-300:]))
        return ms
    finally:
        s.close()


def process_start():
    t0 = now()
    subprocess.run([vb.KILN, "--version"], stdout=subprocess.DEVNULL, check=True)
    return (now() - t0) * 1000


def cold_boot(mib):
    t0 = now()
    p = subprocess.Popen([vb.KILN, "run", "--kernel", GUEST, "--memory", str(mib)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        vb.wait_output(p, b"SNAP ready", now() + 120)
        return (now() - t0) * 1000
    finally:
        vb.stop(p)


def snapshot_once(mib, work):
    """Boots the guest over the API, takes a Full and then a Diff snapshot; returns
    (full_ms, diff_ms, state, mem)."""
    sock = os.path.join(work, "api.sock")
    p = subprocess.Popen([vb.KILN, "--api-sock", sock], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        api(sock, p, "PUT", "/boot-source", {"kernel_image_path": GUEST})
        api(sock, p, "PUT", "/machine-config",
            {"vcpu_count": 1, "mem_size_mib": mib, "track_dirty_pages": True})
        api(sock, p, "PUT", "/actions", {"action_type": "InstanceStart"})
        vb.wait_output(p, b"SNAP n=2 ", now() + 120)
        api(sock, p, "PATCH", "/vm", {"state": "Paused"})
        full = api(sock, p, "PUT", "/snapshot/create",
                   {"snapshot_type": "Full", "snapshot_path": os.path.join(work, "full.state"),
                    "mem_file_path": os.path.join(work, "full.mem")})
        api(sock, p, "PATCH", "/vm", {"state": "Resumed"})
        vb.wait_output(p, b"SNAP n=4 ", now() + 120)
        api(sock, p, "PATCH", "/vm", {"state": "Paused"})
        diff = api(sock, p, "PUT", "/snapshot/create",
                   {"snapshot_type": "Diff", "snapshot_path": os.path.join(work, "diff.state"),
                    "mem_file_path": os.path.join(work, "diff.mem")})
        return full, diff
    finally:
        vb.stop(p)


def restore_once(work):
    t0 = now()
    p = subprocess.Popen([vb.KILN, "--log-level", "info", "--restore",
                          os.path.join(work, "full.state"), "--mem",
                          os.path.join(work, "full.mem")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        err = b""
        while b"snapshot: restored" not in err:
            r, _, _ = select.select([p.stderr], [], [], 30)
            if not r:
                raise RuntimeError("no restore log: %r" % err[-300:])
            chunk = os.read(p.stderr.fileno(), 65536)
            if not chunk:
                raise RuntimeError("kiln exited: %r" % err[-300:])
            err += chunk
        restored = (now() - t0) * 1000
        vb.wait_output(p, b"SNAP n=", now() + 60)
        running = (now() - t0) * 1000
        rss = vb.status_kib(p.pid)["VmRSS"]
        return restored, running, rss
    finally:
        vb.stop(p)


def stats(vals):
    return "%8.1f %8.1f %8.1f" % (statistics.median(vals), min(vals), max(vals))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="128,1024")
    args = ap.parse_args()
    print("%-34s %8s %8s %8s  %s" % ("figure (ms unless said)", "median", "min", "max",
                                      "vs cold boot (medians)"))
    for mib in [int(s) for s in args.sizes.split(",")]:
        start, cold, full, diff, restored, running, rss = [], [], [], [], [], [], []
        for _ in range(args.runs):
            start.append(process_start())
            work = tempfile.mkdtemp(prefix="kiln-snapbench-")
            try:
                cold.append(cold_boot(mib))
                f, d = snapshot_once(mib, work)
                full.append(f)
                diff.append(d)
                r, g, m = restore_once(work)
                restored.append(r)
                running.append(g)
                rss.append(m / 1024)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        base = statistics.median(cold)
        for name, vals, ratio in (("process start", start, True),
                                  ("cold boot to first line", cold, False),
                                  ("create Full", full, False), ("create Diff", diff, False),
                                  ("restore (host side)", restored, True),
                                  ("restore to the next guest line", running, True),
                                  ("restored RSS (MiB)", rss, False)):
            r = "%.2fx" % (statistics.median(vals) / base) if ratio else ""
            print("%-34s %s  %s" % ("%d MiB: %s" % (mib, name), stats(vals), r))


if __name__ == "__main__":
    main()
