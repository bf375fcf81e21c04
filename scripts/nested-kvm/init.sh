#!/bin/busybox sh
# /init of the nested-kvm initramfs (see README.md). Runs as PID 1 inside the TCG VM.
# Loads the modules listed in /modules.order, mounts the host's root filesystem (9p tag
# "hostroot", read-only) at /host and the per-run exchange directory (9p tag "nkio",
# writable) at /host/run/nested-kvm-io, moves /host onto / and runs
# /run/nested-kvm-io/cmd.sh chrooted into it, writes its exit status to the exchange directory
# and powers off.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mkdir -p /proc /sys /dev /tmp /host
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
  echo "nested-kvm: $*" >&2
  echo "NESTED-EXIT=125"
  poweroff -f
  sleep 60
}

kvm_amd_params=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    nested_kvm.kvm_amd=*) kvm_amd_params="$(echo "${arg#nested_kvm.kvm_amd=}" | tr ',' ' ')" ;;
  esac
done

while read -r mod; do
  [ -n "$mod" ] || continue
  params=""
  [ "$mod" = kvm-amd ] && params="$kvm_amd_params"
  # No NX huge page recovery thread: under TCG it was seen stuck with the VM's other CPU (soft
  # lockups, the whole VM frozen) during many VM starts; AMD CPUs need no iTLB-multihit
  # mitigation. Kernels without the "never" setting load kvm as it is.
  if [ "$mod" = kvm ] && insmod "/modules/$mod.ko" nx_huge_pages=never 2>/dev/null; then continue; fi
  # shellcheck disable=SC2086
  insmod "/modules/$mod.ko" $params || echo "nested-kvm: insmod $mod failed" >&2
done < /modules.order

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host \
  || fail "cannot mount the host root (9p)"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/nested-kvm-io
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none nkio /host/run/nested-kvm-io \
  || fail "cannot mount the exchange directory (9p)"
# Extra writable host directories, listed one per line in rw.list (index = 9p tag rwN).
i=0
if [ -f /host/run/nested-kvm-io/rw.list ]; then
  while read -r dir; do
    [ -n "$dir" ] || continue
    mkdir -p "/host$dir" 2>/dev/null  # needed where it lies under a tmpfs (/tmp, /run)
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none "rw$i" "/host$dir" \
      || echo "nested-kvm: cannot mount $dir writable" >&2
    i=$((i + 1))
  done < /host/run/nested-kvm-io/rw.list
fi

if [ -c /dev/kvm ]; then
  echo "nested-kvm: /dev/kvm ready (kvm_amd $(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null | sed 's/^/npt=/'), nx_huge_pages=$(cat /sys/module/kvm/parameters/nx_huge_pages 2>/dev/null))" >&2
else
  echo "nested-kvm: WARNING: no /dev/kvm in the VM" >&2
fi

# The host root moved onto / (as switch_root does, PID 1 staying here), then chrooted into:
# a process that joins a mount namespace (setns, as `podman cp` into a running container
# does) lands on the namespace's "/", which must be this root, not the initramfs beneath.
cd /host && mount --move /host / || fail "cannot move the host root onto /"
chroot . /bin/sh /run/nested-kvm-io/cmd.sh
rc=$?
echo "$rc" > run/nested-kvm-io/rc
sync
echo "NESTED-EXIT=$rc"
poweroff -f
sleep 60
