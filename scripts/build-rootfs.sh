#!/usr/bin/env bash
# Builds a small ext4 root file system for Kiln guests: Debian's static busybox with its applet
# links, and an /init shell script. No root privileges and no loop mounts: the tree is staged in
# a temporary directory and written with `mkfs.ext4 -d`. Takes about a second; it is rebuilt on
# every run.
#
#   scripts/build-rootfs.sh [--out FILE] [--size MiB] [--add HOSTFILE:GUESTPATH]...
#   scripts/build-rootfs.sh --dir DIR [--add HOSTFILE:GUESTPATH]...
#
#   --out FILE   image to write (default ${KILN_CACHE:-$HOME/.cache/kiln}/rootfs/rootfs.ext4)
#   --size MiB   image size (default 64)
#   --dir DIR    write the tree to directory DIR instead of an image, for a root on virtio-fs
#                (kiln run --fs tag=root,path=DIR --cmdline "... rootfstype=virtiofs root=root
#                rw"). DIR must not exist, be empty, or be an earlier --dir tree (it is replaced).
#                Its files belong to the user who ran the script (root only when run as root);
#                the guest sees those owners.
#   --add H:G    copy host file H to guest path G (repeatable), keeping its mode. Adding
#                /etc/kiln-test.sh makes the image a test image (see below).
#
# /init (also /sbin/init, so no init= is needed) mounts /proc, /sys, /dev (devtmpfs), /dev/pts,
# /tmp and /run, then:
#   - if /etc/kiln-test.sh exists, runs it with sh, prints "kiln-test: exit status N" and
#     reboots with `reboot -f`;
#   - otherwise starts an interactive shell on the console (setsid cttyhack sh -l) and reboots
#     when it exits.
# With reboot=k on the kernel command line (Kiln's default) the reboot goes through the i8042
# reset and `kiln run` exits with status 0. (`poweroff -f` would only halt: no ACPI yet.)
# Everything in the image is owned by root (fixed with debugfs when built by a non-root user).
# The last line printed is "rootfs: PATH" (the image, or the --dir directory).
set -euo pipefail

out="${KILN_CACHE:-$HOME/.cache/kiln}/rootfs/rootfs.ext4"
size=64
size_given=""
dir=""
adds=()
usage() { sed -n '2,31s/^# \{0,1\}//p' "$0"; }
while (($#)); do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "build-rootfs: --out needs a file" >&2; exit 2; }; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    --size) [ $# -ge 2 ] || { echo "build-rootfs: --size needs MiB" >&2; exit 2; }; size=$2; size_given=1; shift ;;
    --size=*) size=${1#--size=}; size_given=1 ;;
    --dir) [ $# -ge 2 ] || { echo "build-rootfs: --dir needs a directory" >&2; exit 2; }; dir=$2; shift ;;
    --dir=*) dir=${1#--dir=} ;;
    --add) [ $# -ge 2 ] || { echo "build-rootfs: --add needs HOSTFILE:GUESTPATH" >&2; exit 2; }
           adds+=("$2"); shift ;;
    --add=*) adds+=("${1#--add=}") ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-rootfs: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "build-rootfs: $*" >&2; }
die() { log "error: $*"; exit 2; }
[[ $size =~ ^[0-9]+$ ]] && ((size >= 8)) || die "--size must be a whole number of MiB, at least 8"
[ -z "$dir" ] || [ -z "$size_given" ] || die "--size is for images; a --dir tree has no size"

# --- Tools -----------------------------------------------------------------------------------
busybox=/bin/busybox
missing=()
for p in busybox-static e2fsprogs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/sbin:/usr/sbin"
# busybox-static replaces the dynamic busybox package, but make sure the binary is static.
if LC_ALL=C readelf -l "$busybox" 2>/dev/null | grep -q 'INTERP'; then
  die "$busybox is dynamically linked; install busybox-static"
fi

# --- Stage the tree ----------------------------------------------------------------------------
for i in "${!adds[@]}"; do
  host=${adds[$i]%%:*}
  [ "$host" = "${adds[$i]}" ] || [ -z "$host" ] || adds[$i]="$(realpath -m -- "$host"):${adds[$i]#*:}"
done
out=$(realpath -m -- "$out")
if [ -n "$dir" ]; then
  dir=$(realpath -m -- "$dir")
  # Replaced only when it is empty or an earlier tree of ours (marked /.kiln-rootfs).
  if [ -e "$dir" ] && ! { [ -d "$dir" ] && { [ -f "$dir/.kiln-rootfs" ] || [ -z "$(ls -A "$dir")" ]; }; }; then
    die "--dir $dir exists and is neither empty nor an earlier build-rootfs --dir tree"
  fi
  mkdir -p "$(dirname "$dir")"
  stage=$(mktemp -d "$dir.tmp.XXXXXX")  # beside DIR: moved into place at the end
else
  stage=$(mktemp -d "${TMPDIR:-/tmp}/kiln-rootfs.XXXXXX")
fi
trap 'rm -rf "$stage"' EXIT
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp run root mnt var/log
chmod 1777 tmp
chmod 0700 root
install -m 0755 "$busybox" bin/busybox
# Applet links where busybox --list-full puts them (bin/, sbin/, usr/bin/, usr/sbin/).
# One perl process instead of a fork per applet (perl-base is always installed on Debian).
"$busybox" --list-full | perl -ne 'chomp; next if $_ eq "" || $_ eq "bin/busybox" || $_ eq "linuxrc";
  die "unexpected applet path $_\n" unless m{^(usr/)?s?bin/[^/]+$};
  symlink("/bin/busybox", $_) or die "symlink $_: $!\n"'

cat >init <<'EOF'
#!/bin/sh
# Kiln guest init (scripts/build-rootfs.sh). PID 1: must never exit, or the kernel panics.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-vt100}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# CONFIG_DEVTMPFS_MOUNT has usually mounted /dev already.
grep -q '^devtmpfs /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
hostname kiln
ip link set lo up 2>/dev/null

if [ -f /etc/kiln-test.sh ]; then
  echo "kiln-init: running /etc/kiln-test.sh"
  sh /etc/kiln-test.sh
  echo "kiln-test: exit status $?"
else
  echo "kiln-init: no /etc/kiln-test.sh; starting a shell (exit it to reboot, which ends kiln)"
  setsid cttyhack sh -l
fi

echo "kiln-init: rebooting"
sync
mount -o remount,ro / 2>/dev/null
reboot -f
# Only reached if the reboot failed: keep PID 1 alive.
echo "kiln-init: reboot -f failed; halting"
while :; do sleep 3600; done
EOF
chmod 0755 init
ln -sf /init sbin/init

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >etc/group <<'EOF'
root:x:0:
tty:x:5:
EOF
echo kiln >etc/hostname
cat >etc/profile <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
PS1='kiln:\w\$ '
EOF
: >etc/fstab

for spec in "${adds[@]}"; do
  host=${spec%%:*}
  guest=${spec#*:}
  [ "$host" != "$spec" ] && [ -n "$host" ] && [[ $guest == /* ]] ||
    die "--add wants HOSTFILE:/GUEST/PATH, got '$spec'"
  [ -f "$host" ] || die "--add: '$host' is not a file"
  mkdir -p "$stage$(dirname "$guest")"
  cp "$host" "$stage$guest"
  chmod "$(stat -c %a "$host")" "$stage$guest"
done

added=""
for spec in "${adds[@]}"; do added+=" ${spec#*:}"; done
bb_version=$("$busybox" | awk 'NR == 1 {print $2}')  # reads it all: no SIGPIPE under pipefail

# --- Or write the directory -------------------------------------------------------------------
if [ -n "$dir" ]; then
  chmod 0755 "$stage"
  : >"$stage/.kiln-rootfs"
  rm -rf "$dir"
  mv "$stage" "$dir"
  log "wrote a directory tree owned by $(id -un): busybox $bb_version, /init${added}"
  echo "rootfs: $dir"
  exit 0
fi

# --- Write the image ---------------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
tmp_img="$out.tmp.$$"
trap 'rm -rf "$stage" "$tmp_img" "$stage.debugfs" "$stage.debugfs.err"' EXIT
rm -f "$tmp_img"
truncate -s "${size}M" "$tmp_img"
mkfs.ext4 -q -F -b 4096 -L kiln-root -E root_owner=0:0 -d "$stage" "$tmp_img" ||
  die "mkfs.ext4 failed"
if [ "$(id -u)" -ne 0 ]; then
  # mkfs.ext4 -d copies the staging tree's owner (this user); make everything root's.
  (cd "$stage" && find . -mindepth 1 | sed 's|^\.||') |
    while IFS= read -r path; do
      printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$path" "$path"
    done >"$stage.debugfs"
  debugfs -w -f "$stage.debugfs" "$tmp_img" >/dev/null 2>"$stage.debugfs.err" || {
    cat "$stage.debugfs.err" >&2
    die "debugfs could not set owners"
  }
fi
mv -f "$tmp_img" "$out"
log "wrote a ${size} MiB ext4 image: busybox $bb_version, /init${added}"
echo "rootfs: $out"
