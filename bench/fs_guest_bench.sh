#!/usr/bin/env bash
# The virtio-fs benchmark's run (scripts/bench.sh --fs prepares the kit and calls this where
# guests run: here on VMX/SVM KVM, else inside the nested-KVM VM). Boots the kit's kernel with
# one share (--fs tag=bench,path=DIR, cache=auto) of a fresh directory under $TMPDIR; the guest
# mounts it and runs bench/fs_ops.sh on it; then the same script runs here, with this machine's
# busybox, on the same directory. Prints both sets of FSBENCH lines and the table.
#
#   bench/fs_guest_bench.sh KILN KERNEL ROOTFS OUTDIR
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 out=$4
here="$(cd "$(dirname "$0")" && pwd)"
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fsbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

echo "fs-bench: guest run (kit kernel, virtio-fs share of $dir)" >&2
start=$(date +%s)
timeout -k 5 1200 "$kiln" run --kernel "$kernel" --rootfs "$rootfs" --memory 512 --cpus 1 \
  --cmdline "console=ttyS0 reboot=k panic=1 quiet" --fs "tag=bench,path=$dir" \
  < /dev/null > "$out/fs-console.log" 2>&1
rc=$?
echo "fs-bench: kiln exited $rc after $(($(date +%s) - start)) s" >&2
tr -d '\r' < "$out/fs-console.log" | grep '^FSBENCH guest ' > "$out/fs-guest.txt"

echo "fs-bench: host run (same script, this machine's busybox, on $dir)" >&2
busybox sh "$here/fs_ops.sh" "$dir" host > "$out/fs-host.txt" 2>&1
cat "$out/fs-guest.txt" "$out/fs-host.txt"
grep -q 'FSBENCH guest done' "$out/fs-guest.txt" ||
  { echo "fs-bench: the guest did not finish (see $out/fs-console.log)" >&2; exit 1; }
grep -q 'FSBENCH host done' "$out/fs-host.txt" ||
  { echo "fs-bench: the host run did not finish (see $out/fs-host.txt)" >&2; exit 1; }
