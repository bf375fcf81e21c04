#!/usr/bin/env python3
"""`kiln sandbox run ROOT -- true` (booted, and restored --warm) and `podman --runtime kiln-oci
run --rm IMAGE true` (booted, and warm with a runtime config saying so) beside `podman --runtime
runc run --rm IMAGE true` on the same image, in one run
(bench/sandbox_bench.sh prepares the roots and Podman's state and calls this). Prints figures;
never a test.

  sandbox_bench.py run --runs N --out JSON --kiln KILN --kernel VMLINUX --initrd CPIO
                       --archive TAR --ext4 IMG --image NAME --kiln-oci KILN_OCI
                       --timings FILE --warm-conf CONTAINERS_CONF -- PODMAN_GLOBAL_ARGS...
  sandbox_bench.py report JSON

`run` does one warm-up of each kind that has something to fill (Kiln's image cache and warm
snapshot; Podman's first container), then N rounds of the three commands, the order flipping each round, each
timed with time.monotonic around the process; Kiln's `--timings` line splits its runs into
phases, and kiln-oci's containers append theirs to FILE (the io.kiln.timings annotation).
`report` prints the table: median/min/max over the runs, and each Kiln median over
Podman's median wall time.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

TIMINGS = re.compile(
    r"kiln sandbox: agent ready ([\d.]+) ms \(kernel boot to agent ([\d.]+) ms, agent start-up "
    r"([\d.]+) ms\), workload started ([\d.]+) ms, exited ([\d.]+) ms")
WARM_TIMINGS = re.compile(
    r"kiln sandbox: agent ready ([\d.]+) ms \(restored warm, workload root set up\), workload "
    r"started ([\d.]+) ms, exited ([\d.]+) ms")
KINDS = [("kiln_image", "kiln sandbox run IMAGE.tar (docker-archive, cached)"),
         ("kiln_image_warm", "kiln sandbox run --warm IMAGE.tar (restored snapshot)"),
         ("kiln_ext4", "kiln sandbox run ROOTFS.ext4 (virtio-blk)"),
         ("podman_kiln", "podman --runtime kiln-oci run --rm --network none IMAGE"),
         ("podman_kiln_warm", "podman --runtime kiln-oci (warm = true) run --rm ... IMAGE"),
         ("podman", "podman --runtime runc run --rm --network none IMAGE")]
# Phases of a Kiln run, from its --timings line (host times are from Kiln's start, guest times
# are the guest's CLOCK_BOOTTIME, which starts near kernel entry).
PHASES = [("to_kernel_ms", "Kiln start to guest kernel (+ connect, hello)"),
          ("kernel_to_ready_ms", "guest kernel to agent ready"),
          ("agent_startup_ms", "  of which the agent's start-up"),
          ("ready_to_start_ms", "agent ready to process started"),
          ("start_to_exit_ms", "process started to exited"),
          ("after_exit_ms", "exited to Kiln's exit (+ exec of Kiln)"),
          ("wall_ms", "whole (wall)")]
# Phases of a warm Kiln run (restored, not booted).
WARM_PHASES = [("to_ready_ms", "Kiln start to agent set up (restore, connect, configure)"),
               ("ready_to_start_ms", "agent set up to process started"),
               ("start_to_exit_ms", "process started to exited"),
               ("after_exit_ms", "exited to Kiln's exit (+ exec of Kiln)"),
               ("wall_ms", "whole (wall)")]
# Phases of a kiln-oci container, from the io.kiln.timings line its sandbox appends (ms from
# the sandbox process's start, which is inside `kiln-oci create`).
OCI_PHASES = [("before_ms", "podman and conmon until the sandbox starts"),
              ("to_kernel_ms", "sandbox start to guest kernel (VMM start)"),
              ("kernel_to_ready_ms", "guest kernel to agent ready"),
              ("agent_startup_ms", "  of which the agent's start-up"),
              ("ready_to_start_ms", "agent ready to `kiln-oci start` (the engine)"),
              ("start_to_started_ms", "start to process started"),
              ("start_to_exit_ms", "process started to exited"),
              ("after_exit_ms", "exited to podman's exit (VM off, cleanup)"),
              ("wall_ms", "whole (wall)")]
OCI_WARM_PHASES = [("before_ms", "podman and conmon until the sandbox starts"),
                   ("to_ready_ms", "sandbox start to agent set up (restore, configure)"),
                   ("ready_to_start_ms", "agent set up to `kiln-oci start` (the engine)"),
                   ("start_to_started_ms", "start to process started"),
                   ("start_to_exit_ms", "process started to exited"),
                   ("after_exit_ms", "exited to podman's exit (VM off, cleanup)"),
                   ("wall_ms", "whole (wall)")]


def oci_phases(s, path):
    """Adds a kiln-oci run's phases to sample `s` from the line its sandbox wrote to `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            t = json.loads(f.read().splitlines()[-1])
    except (OSError, IndexError, ValueError) as e:
        s["error"] = f"no timings in {path}: {e}"
        return
    ready, boot, startup = t["agent_ready_ms"], t["kernel_boot_ms"], t["agent_startup_ms"]
    inside = t["exited_ms"]
    if t.get("warm"):
        s["to_ready_ms"] = ready
    else:
        s.update(to_kernel_ms=ready - boot - startup, kernel_to_ready_ms=boot + startup,
                 agent_startup_ms=startup)
    s.update(ready_to_start_ms=t["start_requested_ms"] - ready,
             start_to_started_ms=t["started_ms"] - t["start_requested_ms"],
             start_to_exit_ms=inside - t["started_ms"])
    # The sandbox's times are from its own start inside `kiln-oci create`; CLOCK_MONOTONIC
    # (Python's time.monotonic) places that start within podman's run.
    s["before_ms"] = t["monotonic_start_ms"] - s.pop("t0_ms")
    s["after_exit_ms"] = s["wall_ms"] - s["before_ms"] - inside
    for k in list(s):
        if isinstance(s[k], float):
            s[k] = round(s[k], 3)


def timed(cmd, kiln, timings_file=None, env=None):
    if timings_file:
        open(timings_file, "w", encoding="utf-8").close()
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, check=False,
                       env=dict(os.environ, **env) if env else None)
    s = {"wall_ms": (time.monotonic() - t0) * 1e3, "status": p.returncode}
    if timings_file and p.returncode == 0:
        s["t0_ms"] = t0 * 1e3
        oci_phases(s, timings_file)
    m = TIMINGS.search(p.stderr)
    w = WARM_TIMINGS.search(p.stderr)
    if w:
        ready, started, exited = map(float, w.groups())
        s.update(to_ready_ms=ready, ready_to_start_ms=started - ready,
                 start_to_exit_ms=exited - started, after_exit_ms=s["wall_ms"] - exited)
        m = w
    elif m:
        ready, boot, startup, started, exited = map(float, m.groups())
        s.update(ready_ms=ready, boot_ms=boot, startup_ms=startup, started_ms=started,
                 exited_ms=exited, to_kernel_ms=ready - boot - startup,
                 kernel_to_ready_ms=boot + startup, agent_startup_ms=startup,
                 ready_to_start_ms=started - ready, start_to_exit_ms=exited - started,
                 after_exit_ms=s["wall_ms"] - exited)
    s = {k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}
    if p.returncode != 0 or (kiln and not m and not timings_file):
        s["error"] = (p.stdout + p.stderr)[-2000:]
        print(f"sandbox-bench: {' '.join(cmd)} exited {p.returncode}:\n{s['error']}",
              file=sys.stderr)
    return s


def run(a):
    kiln = [a.kiln, "sandbox", "run", "--rm", "--timings", "--kernel", a.kernel,
            "--initrd", a.initrd]
    podman_kiln = ["podman", *a.podman, "--runtime", a.kiln_oci, "run", "--rm", "--network",
                   "none", "--annotation", "io.kiln.timings=" + a.timings, a.image, "true"]
    cmds = {"kiln_image": kiln + [a.archive, "--", "true"],
            "kiln_image_warm": kiln + ["--warm", a.archive, "--", "true"],
            "kiln_ext4": kiln + [a.ext4, "--", "true"],
            "podman_kiln": podman_kiln,
            "podman_kiln_warm": podman_kiln,
            "podman": ["podman", *a.podman, "--runtime", "runc", "run", "--rm",
                       "--network", "none", a.image, "true"]}
    res = {"runs": a.runs, "commands": cmds, "warmup": {}, "samples": {k: [] for k in cmds}}

    def one(k):
        return timed(cmds[k], k != "podman", a.timings if k.startswith("podman_kiln") else None,
                     {"CONTAINERS_CONF": a.warm_conf} if k == "podman_kiln_warm" else None)

    for k in ("kiln_image", "kiln_image_warm", "podman_kiln", "podman_kiln_warm", "podman"):
        print(f"sandbox-bench: warm-up {k}", file=sys.stderr)
        res["warmup"][k] = one(k)
    order = list(cmds)
    t0 = time.monotonic()
    for i in range(a.runs):
        for k in (order if i % 2 == 0 else order[::-1]):
            s = one(k)
            s["round"] = i
            res["samples"][k].append(s)
            print(f"sandbox-bench: round {i + 1}/{a.runs} {k} {s['wall_ms']:.0f} ms",
                  file=sys.stderr)
    res["measured_s"] = time.monotonic() - t0
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    report(res)
    return 1 if any("error" in s for v in res["samples"].values() for s in v) else 0


def report(res):
    def stats(samples, key):
        v = [s[key] for s in samples if "error" not in s and key in s]
        return (statistics.median(v), min(v), max(v)) if v else None

    pod = stats(res["samples"]["podman"], "wall_ms")
    f = "%-48s %9s %9s %9s %9s\n"
    out = f % ("ms (%d runs each, alternated)" % res["runs"], "median", "min", "max",
               "/ podman")
    for kind, title in KINDS:
        samples = res["samples"].get(kind, [])
        bad = sum("error" in s for s in samples)
        out += title + (f" ({bad} failed)" if bad else "") + "\n"
        phases = {"podman": PHASES[-1:], "podman_kiln": OCI_PHASES,
                  "podman_kiln_warm": OCI_WARM_PHASES, "kiln_image_warm": WARM_PHASES}.get(
                      kind, PHASES)
        for key, label in phases:
            st = stats(samples, key)
            if not st:
                out += f % ("  " + label, "-", "-", "-", "-")
                continue
            ratio = "%.2f" % (st[0] / pod[0]) if pod and kind != "podman" else ""
            out += f % ("  " + label, *("%.1f" % x for x in st), ratio)
    out += "/ podman = the median over runc's (podman --runtime runc) median wall time\n"
    sys.stdout.write(out)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=int, default=5)
    for opt in ("out", "kiln", "kernel", "initrd", "archive", "ext4", "image", "kiln-oci",
                "timings", "warm-conf"):
        r.add_argument("--" + opt, required=True)
    r.add_argument("podman", nargs="*", help="Podman's global options (after --)")
    rep = sub.add_parser("report")
    rep.add_argument("json")
    a = p.parse_args()
    if a.cmd == "run":
        sys.exit(run(a))
    with open(a.json, encoding="utf-8") as f:
        report(json.load(f))


if __name__ == "__main__":
    main()
