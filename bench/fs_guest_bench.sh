#!/usr/bin/env bash
# The virtio-fs benchmark's run (scripts/bench.sh --fs prepares the kit and calls this where
# guests run: here on VMX/SVM KVM, else inside the nested-KVM VM). Boots the kit's kernel with
# two shares of fresh directories under $TMPDIR: tag=bench (cache=auto, the default) and
# tag=benchalways (cache=always); the guest mounts both and runs bench/fs_ops.sh on each; then
# the same script runs here, with this machine's busybox, on the cache=auto directory. Writes
# OUTDIR/fs-results.txt (every FSBENCH line) and prints it.
#
#   bench/fs_guest_bench.sh KILN KERNEL ROOTFS OUTDIR
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 out=$4
here="$(cd "$(dirname "$0")" && pwd)"
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fsbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/auto" "$dir/always"

echo "fs-bench: guest run (kit kernel, virtio-fs share of $dir)" >&2
start=$(date +%s)
timeout -k 5 1200 "$kiln" run --kernel "$kernel" --rootfs "$rootfs" --memory 512 --cpus 1 \
  --cmdline "console=ttyS0 reboot=k panic=1 quiet" --fs "tag=bench,path=$dir/auto" \
  --fs "tag=benchalways,path=$dir/always,cache=always" \
  < /dev/null > "$out/fs-console.log" 2>&1
rc=$?
echo "fs-bench: kiln exited $rc after $(($(date +%s) - start)) s" >&2
tr -d '\r' < "$out/fs-console.log" | grep '^FSBENCH guest' > "$out/fs-results.txt"

echo "fs-bench: host run (same script, this machine's busybox, on $dir/auto)" >&2
busybox sh "$here/fs_ops.sh" "$dir/auto" host >> "$out/fs-results.txt" 2>&1
cat "$out/fs-results.txt"
for side in guest guest_always host; do
  grep -q "^FSBENCH $side done" "$out/fs-results.txt" ||
    { echo "fs-bench: the $side run did not finish (see $out/fs-console.log)" >&2; exit 1; }
done
