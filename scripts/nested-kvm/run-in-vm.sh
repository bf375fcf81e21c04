#!/usr/bin/env bash
# Runs CMD... inside a QEMU TCG (pure emulation) VM whose emulated CPU has AMD SVM, where
# the Debian kernel's kvm_amd module provides /dev/kvm. The VM sees this machine's root
# filesystem read-only (chrooted into it, so binaries and their shared libraries resolve),
# with tmpfs /tmp, /run and /dev/shm. Streams the command's output and exits with its status
# (125 when the VM itself failed). See README.md beside this file.
#
#   scripts/nested-kvm/run-in-vm.sh [--rw DIR]... CMD [ARG]...
#
# Environment: NESTED_KVM_KERNEL (kernel version under /lib/modules, default: newest one
# with a /boot/vmlinuz-*), NESTED_KVM_CPU (default: EPYC less what TCG lacks), NESTED_KVM_MEM (MiB, 2048),
# NESTED_KVM_SMP (2), NESTED_KVM_KVM_AMD (kvm_amd parameters, comma separated, e.g. npt=0),
# NESTED_KVM_TIMEOUT (seconds, 3600), NESTED_KVM_CACHE (build/nested-kvm in the repo).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

rw_dirs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rw) rw_dirs+=("$(cd "$2" && pwd)"); shift 2 ;;
    --) shift; break ;;
    -*) echo "run-in-vm: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--rw DIR]... CMD [ARG]..." >&2; exit 2; }

die() { echo "run-in-vm: $*" >&2; exit 125; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list 2>/dev/null | grep -x insmod >/dev/null \
  || die "static busybox missing (apt-get install busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'dynamically linked' \
  && die "$busybox is dynamically linked (apt-get install busybox-static)"

kver="${NESTED_KVM_KERNEL:-}"
if [ -z "$kver" ]; then
  for k in $(ls /lib/modules 2>/dev/null | sort -V); do
    [ -f "/boot/vmlinuz-$k" ] && [ -f "/lib/modules/$k/modules.dep" ] && kver="$k"
  done
fi
[ -n "$kver" ] || die "no kernel with /boot/vmlinuz-VER and /lib/modules/VER (apt-get install linux-image-amd64)"
kernel="/boot/vmlinuz-$kver"
[ -r "$kernel" ] || die "$kernel missing or unreadable"
moddir="/lib/modules/$kver"

# ---- initramfs, cached by kernel version and init script -------------------------------
cache="${NESTED_KVM_CACHE:-$repo/build/nested-kvm}"
mkdir -p "$cache"
key="$(cat "$here/init.sh" "$0" "$busybox" | sha256sum | cut -c1-12)"
initrd="$cache/initramfs-$kver-$key.cpio.gz"

# Prints the module (and its dependencies, dependencies first) as paths relative to $moddir.
mod_with_deps() {
  local name="$1" line path deps d i
  line="$(grep -E "(^|/)${name//-/[-_]}\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -1)" || true
  [ -n "$line" ] || return 0  # built in (or absent): nothing to load
  path="${line%%:*}"
  read -r -a deps <<< "${line#*:}"
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
    d="$(basename "${deps[i]}")"; d="${d%%.ko*}"
    mod_with_deps "$d"
  done
  echo "$path"
}

# Several VMs may start at once (scripts/test.sh runs two): one builds, the others wait.
exec 8>"$cache/.initramfs.lock"
flock 8
if [ ! -f "$initrd" ]; then
  echo "run-in-vm: building $initrd" >&2
  rm -f "$cache"/initramfs-*.cpio.gz  # older kernels or init scripts
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/bin" "$stage/modules"
  cp "$busybox" "$stage/bin/busybox"
  cp "$here/init.sh" "$stage/init"
  chmod 755 "$stage/init"
  : > "$stage/modules.order"
  for m in virtio_pci 9pnet_virtio 9p kvm-amd tun; do  # tun: virtio-net tests make TAPs
    for p in $(mod_with_deps "$m"); do
      n="$(basename "$p")"; n="${n%%.ko*}"
      grep -qx "$n" "$stage/modules.order" && continue
      case "$p" in
        *.ko.xz) xz -dc "$moddir/$p" > "$stage/modules/$n.ko" ;;
        *.ko.zst) zstd -qdc "$moddir/$p" > "$stage/modules/$n.ko" ;;
        *.ko.gz) gzip -dc "$moddir/$p" > "$stage/modules/$n.ko" ;;
        *) cp "$moddir/$p" "$stage/modules/$n.ko" ;;
      esac
      echo "$n" >> "$stage/modules.order"
    done
  done
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  rm -rf "$stage"
  trap - EXIT
fi
flock -u 8
exec 8>&-

# ---- per-run exchange directory: the command in, the exit status out ------------------
io="$(mktemp -d "${TMPDIR:-/tmp}/nested-kvm-io.XXXXXX")"
trap 'rm -rf "$io"' EXIT
{
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  echo 'export HOME=/root TMPDIR=/tmp LANG=C.UTF-8'
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$io/cmd.sh"
rw_args=()
if [ ${#rw_dirs[@]} -gt 0 ]; then
  for i in "${!rw_dirs[@]}"; do
    echo "${rw_dirs[i]}" >> "$io/rw.list"
    rw_args+=(-virtfs "local,path=${rw_dirs[i]},mount_tag=rw$i,security_model=none,multidevs=remap")
  done
fi

# EPYC minus the features TCG cannot emulate (QEMU warns about each otherwise).
default_cpu=EPYC,-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save,-xsavec

append="console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init"
[ -n "${NESTED_KVM_KVM_AMD:-}" ] && append+=" nested_kvm.kvm_amd=${NESTED_KVM_KVM_AMD}"

set +e
timeout --foreground -k 10 "${NESTED_KVM_TIMEOUT:-3600}" \
  qemu-system-x86_64 -accel tcg,thread=multi -cpu "${NESTED_KVM_CPU:-$default_cpu}" \
    -m "${NESTED_KVM_MEM:-2048}" -smp "${NESTED_KVM_SMP:-2}" \
    -display none -monitor none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$initrd" -append "$append" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$io,mount_tag=nkio,security_model=none,multidevs=remap" \
    "${rw_args[@]}" < /dev/null | sed -u 's/\r$//'
qemu_rc=${PIPESTATUS[0]}
set -e

if [ -f "$io/rc" ]; then
  exit "$(cat "$io/rc")"
fi
echo "run-in-vm: the VM stopped without the command's exit status (qemu exit $qemu_rc)" >&2
exit 125
