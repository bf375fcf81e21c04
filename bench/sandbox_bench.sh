#!/usr/bin/env bash
# The sandbox start-up benchmark's run (scripts/bench.sh --sandbox calls this where guests run:
# here on VMX/SVM KVM, else inside the nested-KVM VM). Under a fresh directory in $TMPDIR it
# writes the kit's busybox tree (scripts/build-rootfs.sh --dir) and the same tree as an ext4
# image, imports the tree into Podman (all of Podman's state in that directory, vfs storage,
# cgroupfs) and saves it as a docker-archive; copies KILN, the kit's kernel and the agent's
# initramfs there too, with kiln-oci linked beside them (so every binary is paged from memory,
# as Podman's are from the VM's cached root). Then bench/sandbox_bench.py runs, round by round
# with the order flipping, `kiln sandbox run --rm --timings` on the archive and on the ext4
# image and --warm on the archive, and `podman --runtime kiln-oci` (booted, and warm by a second
# containers.conf naming a runtime config with warm = true) and `--runtime runc` `run --rm
# --network none` on the image, each running `true`; it prints the table and
# writes OUTDIR/sandbox-results.json (every sample). Everything under $TMPDIR goes on exit.
#
#   bench/sandbox_bench.sh [--runs N] KILN OUTDIR     (N rounds, default 5; KILN has
#                                                      guest-kernel/vmlinux and agent/ beside it)
set -uo pipefail
runs=5
[ "${1:-}" = --runs ] && { runs=$2; shift 2; }
kiln=$1 out=$2
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(dirname "$kiln")"
dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-sbbench.XXXXXX")
pod=(--root "$dir/pr" --runroot "$dir/prr" --storage-driver vfs)
cg=0
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  podman "${pod[@]}" rm -af >/dev/null 2>&1  # the vfs layers go with $dir
  ((cg)) && umount /sys/fs/cgroup
  rm -rf "$dir"
}
trap cleanup EXIT
die() { echo "sandbox-bench: $*" >&2; exit 1; }

# Podman as engines-here.md has it in the nested VM (a cgroup2 mount where none is, no host
# paths written); the same settings work on an ordinary host.
if ! mountpoint -q /sys/fs/cgroup; then
  mount -t cgroup2 none /sys/fs/cgroup && cg=1
fi
mkdir -p "$dir/pnet" "$dir/ptmp" "$dir/cache" "$dir/sb"
# kiln-oci honours the io.kiln.timings annotation only where its runtime config allows it; the
# config's name reaches it through conmon's environment.
printf 'timings_annotation = true\n' > "$dir/kiln-oci.toml"
cat > "$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "KILN_OCI_CONFIG=$dir/kiln-oci.toml"]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$dir/ptmp"
[network]
network_config_dir = "$dir/pnet"
EOF
# The same with kiln-oci's warm = true (bench/sandbox_bench.py's podman_kiln_warm); the warm
# snapshot in the cache that `kiln sandbox run --warm` uses too.
printf 'timings_annotation = true\nwarm = true\n' > "$dir/kiln-oci-warm.toml"
sed -e "s|KILN_OCI_CONFIG=$dir/kiln-oci.toml\"|KILN_OCI_CONFIG=$dir/kiln-oci-warm.toml\", \"KILN_CACHE=$dir/cache\"|" \
  "$dir/containers.conf" > "$dir/containers-warm.conf"
export CONTAINERS_CONF="$dir/containers.conf" TMPDIR="$dir" KILN_CACHE="$dir/cache" \
  KILN_SANDBOX_DIR="$dir/sb"

echo "sandbox-bench: roots and image under $dir" >&2
rootfs="$here/../scripts/build-rootfs.sh"
"$rootfs" --dir "$dir/root" >/dev/null || die "build-rootfs.sh --dir failed"
"$rootfs" --out "$dir/root.ext4" --size 32 >/dev/null || die "build-rootfs.sh --out failed"
tar -C "$dir/root" -cf "$dir/root.tar" . || die "tar of the tree failed"
podman "${pod[@]}" import -q "$dir/root.tar" localhost/kiln-sbbench:latest >/dev/null ||
  die "podman import failed"
podman "${pod[@]}" save -q --format docker-archive -o "$dir/image.tar" \
  localhost/kiln-sbbench:latest || die "podman save failed"
# kiln-oci (a link to kiln) finds the kernel and initramfs beside it, as in build/.
mkdir -p "$dir/guest-kernel" "$dir/agent"
cp "$kiln" "$dir/" && cp "$bin/guest-kernel/vmlinux" "$dir/guest-kernel/" &&
  cp "$bin/agent/kiln-agent.cpio" "$dir/agent/" && ln -s "${kiln##*/}" "$dir/kiln-oci" ||
  die "cannot copy kiln, the kernel or the initramfs"

start=$(date +%s)
python3 "$here/sandbox_bench.py" run --runs "$runs" --out "$out/sandbox-results.json" \
  --kiln "$dir/${kiln##*/}" --kernel "$dir/guest-kernel/vmlinux" \
  --initrd "$dir/agent/kiln-agent.cpio" --kiln-oci "$dir/kiln-oci" --timings "$dir/timings" \
  --warm-conf "$dir/containers-warm.conf" \
  --archive "$dir/image.tar" --ext4 "$dir/root.ext4" --image localhost/kiln-sbbench:latest \
  -- "${pod[@]}"
rc=$?
echo "sandbox-bench: measured in $(($(date +%s) - start)) s" >&2
exit "$rc"
