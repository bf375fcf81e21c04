#!/usr/bin/env python3
"""Checks that Kiln's layers include one way (docs/ARCHITECTURE.md, "Layers"):

    base -> arch, boot, devices -> vmm -> api -> main (vmm/main.cc)
    base -> image (container images, used by sandbox/)

beside them, the guest agent and the sandbox host side, which must not reach into the VMM:

    base -> agent (its protocol, core and PID-1 code) -> sandbox (the host's agent client; with image/)
         -> oci (kiln-oci, the OCI runtime front end)
    base -> jail (kiln jail, Firecracker jailer's isolation)

A file in a layer may include headers of its own layer and of the layers below it, never above.
Prints each violation as FILE:LINE: LAYER includes HEADER (LAYER') and exits 1 if any."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BELOW = {
    "base": {"base"},
    "arch": {"base", "arch"},
    "boot": {"base", "arch", "boot"},
    "devices": {"base", "devices"},
    "vmm": {"base", "arch", "boot", "devices", "vmm"},
    "api": {"base", "arch", "boot", "devices", "vmm", "api"},
    "image": {"base", "image"},  # container images: beside vmm/, on base/ only
    "agent": {"base", "agent"},
    "sandbox": {"base", "agent", "image", "sandbox"},
    "oci": {"base", "agent", "image", "sandbox", "oci"},  # kiln-oci: a front end on sandbox/
    "jail": {"base", "jail"},  # kiln jail: a front end on base/
}
TOP = {"vmm/main.cc"}  # the composition root links everything
# Known, named exceptions that are being removed; each says why it is still here.
EXCEPTIONS: dict = {}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z0-9_]+)/')

violations = []
for layer in BELOW:
    for path in sorted((ROOT / layer).rglob("*")):
        if path.suffix not in (".h", ".cc"):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if rel in TOP:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or m.group(1) not in BELOW or m.group(1) in BELOW[layer]:
                continue
            if (rel, m.group(1)) in EXCEPTIONS:
                continue
            violations.append(f"{rel}:{number}: {layer} includes {line.strip()} ({m.group(1)})")
for v in violations:
    print(v)
for (rel, target), why in EXCEPTIONS.items():
    print(f"known exception: {rel} -> {target}/: {why}")
print(f"check-layers: {len(violations)} violation(s)")
sys.exit(1 if violations else 0)
