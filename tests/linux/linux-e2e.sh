#!/usr/bin/env bash
# The Linux end-to-end test: real kernels boot through build/kiln and the console and the disk
# images are checked afterwards.
#  - kit: the kit's kernel (scripts/build-guest-kernel.sh) with the kit's ext4 image
#    (scripts/build-rootfs.sh) as root on virtio-blk, 2 vCPUs: the disk is found and ext4
#    mounted read-write; /init ran from it and printed a file the host put on the image; a file
#    the guest wrote is on the image afterwards (debugfs); Linux read Kiln's ACPI tables, took
#    the UART's and the i8042's interrupts from the DSDT, found the MP table and brought both
#    vCPUs up; `poweroff -f` powered off through ACPI (S5) and kiln exited 0.
#  - cad: a short boot with --api-sock; PUT /actions SendCtrlAltDel (curl) reboots the guest
#    through its i8042 and kiln exits 0 (tests/linux/ctrl-alt-del.sh).
#  - snapshot: the kit's kernel at a shell-like loop on the console, snapshotted over the API
#    after answering one command, then restored twice at once in new processes, each clone on
#    its own copy of the disk (--drive-override): each clone answers a command from the state
#    it was in, writes /clone.txt on its own disk (debugfs reads each afterwards; the
#    snapshot's own image is untouched) and powers off with status 0
#    (tests/linux/snapshot-clones.sh). A virtio-fs share is mounted, and the shell holds a file
#    of it open across the snapshot: each clone reads on from that open file and writes a file
#    of its own into the share (clone b into its own copy of the share: --fs-override).
#  - stdin: the kit's interactive shell gets its commands from a pipe given before the guest
#    reads anything (`printf 'echo ...; poweroff -f\n' | kiln run ...`): none may be lost.
#  - fs: the kit's kernel, root on the ext4 image, three virtio-fs shares of directories in
#    build/linux-test (on the host, or the nested VM's 9p view of them) and one in the runner's
#    /tmp: the guest mounts them (mount -t virtiofs), creates, writes, reads, renames,
#    hard-links, symlinks, truncates, chmods, sets and reads an xattr (attr's setfattr and
#    getfattr), fsyncs and deletes; the host then sees exactly that (contents, modes, link
#    count, symlink target, xattr, a 1 MiB file's checksum). Files the host wrote before boot are read
#    with cache=auto and cache=never, and files it rewrites while the guest runs (after the guest
#    read them) are seen again (never: at once; auto: after its 1 s timeout); the read-only share refuses every write; symlinks in the
#    share to a file outside it (absolute and ../) do not show that file's content; stress-ng's
#    file-system stressors (data verification on) run against the /tmp share with no failure.
#    stress-ng and attr are dynamically linked: they are copied in with the libraries ldd names.
#  - fsroot: no image at all: root on a virtio-fs share of a build-rootfs.sh --dir tree
#    (rootfstype=virtiofs root=root rw); the kit's init runs from it and a file it writes is in
#    the directory afterwards.
#  - limits: rate-limited drives (bytes, operations, a PATCH lifting a limit mid-read) and a
#    TX-limited network interface, timed by the guest and the host (tests/linux/rate-limits.sh).
#  - balloon: virtio-balloon's statistics, inflate (kiln's RSS falls by what the guest gave
#    back), deflate, free page reporting and deflate on OOM (tests/linux/balloon.sh).
#  - debian: the distribution's own kernel (/boot/vmlinuz-VER with its initramfs, as Debian's
#    linux-image-amd64 installs it) with the kit's image as root: the Debian kernel ran, its
#    initramfs found the virtio-blk disk through Kiln's DSDT, both vCPUs came up, the kit's init
#    ran the payload from the disk and the guest powered off cleanly. Skipped (and reported as
#    skipped) on a host with no /boot/vmlinuz-*.
#
#   tests/linux/linux-e2e.sh            prepare, boot (here on VMX/SVM KVM, else in one
#                                       nested-KVM VM: scripts/nested-kvm/), check
#   tests/linux/linux-e2e.sh prepare    build the kernel (cached) and the images
#   tests/linux/linux-e2e.sh boots      run the boots here (what the nested VM runs)
#   tests/linux/linux-e2e.sh check      check the logs; writes build/linux-test/junit.xml
# Logs stay in build/linux-test/ (console-*.log, rc-*).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build/linux-test"
cd "$repo"
# shellcheck source=../../scripts/lib/kvm-host.sh
. "$repo/scripts/lib/kvm-host.sh"

cpus=2
cmdline="console=ttyS0 reboot=k panic=1"

# The newest distribution kernel with its initramfs, or nothing.
debian_kernel() {
  local k v
  for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -V); do
    v=${k#/boot/vmlinuz-}
    [ -f "/boot/initrd.img-$v" ] && echo "$v"
  done | tail -n1
}

prepare() {
  rm -rf "$out" && mkdir -p "$out"
  local kernel
  kernel="$(scripts/build-guest-kernel.sh | sed -n 's/^vmlinux: //p')"
  [ -f "$kernel" ] || { echo "linux-e2e: no kernel from build-guest-kernel.sh" >&2; return 1; }
  echo "$kernel" > "$out/kernel"
  od -An -N8 -tx8 /dev/urandom | tr -d ' ' | sed 's/^/host-/' > "$out/token"
  cp "$out/token" "$out/host-file.txt"

  cat > "$out/payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E: host file says $(cat /etc/kiln-host-file.txt)"
echo "LINUX-E2E: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "guest-wrote $(cat /etc/kiln-host-file.txt)" > /guest-wrote.txt
sync
echo "LINUX-E2E: wrote /guest-wrote.txt"
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/rootfs.ext4" --size 32 \
    --add "$out/payload.sh:/etc/kiln-test.sh" \
    --add "$out/host-file.txt:/etc/kiln-host-file.txt" >/dev/null || return 1

  cat > "$out/cad-payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E: waiting for Ctrl-Alt-Del"
sleep 600
PAYLOAD
  scripts/build-rootfs.sh --out "$out/cad-rootfs.ext4" --size 16 \
    --add "$out/cad-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1

  # Runs every line the console gives it (the snapshot clones get theirs after the restore).
  cat > "$out/snap-payload.sh" <<'PAYLOAD'
#!/bin/sh
mkdir -p /mnt/share
mount -t virtiofs snapfs /mnt/share || echo "LINUX-E2E-SNAP: mount failed"
echo "LINUX-E2E-SNAP: ready"
while read -r line; do eval "$line"; done
PAYLOAD
  scripts/build-rootfs.sh --out "$out/snap-rootfs.ext4" --size 16 \
    --add "$out/snap-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1

  # No /etc/kiln-test.sh: the image starts the interactive shell, fed from a pipe.
  scripts/build-rootfs.sh --out "$out/stdin-rootfs.ext4" --size 16 >/dev/null || return 1

  cat > "$out/debian-payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E-DEBIAN: kernel $(uname -r)"
echo "LINUX-E2E-DEBIAN: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "LINUX-E2E-DEBIAN: cpus $(grep -c ^processor /proc/cpuinfo)"
echo "LINUX-E2E-DEBIAN: payload ran"
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/debian-rootfs.ext4" --size 32 \
    --add "$out/debian-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1
  debian_kernel > "$out/debian-version"

  # Rate limits (tests/linux/rate-limits.sh has the devices and their buckets).
  cat > "$out/limits-payload.sh" <<'PAYLOAD'
#!/bin/sh
up() { cut -d' ' -f1 /proc/uptime; }
timed() { n=$1; shift; t0=$(up); "$@" 2>/dev/null; t1=$(up); echo "LIMITS: $n $t0 $t1"; }
timed bw dd if=/dev/vdb of=/dev/null bs=64k iflag=direct
timed ops dd if=/dev/vdc of=/dev/null bs=4k count=200 iflag=direct
echo "LIMITS: patch-start"
timed patch dd if=/dev/vdd of=/dev/null bs=64k iflag=direct
ip link set eth0 up && ip addr add 10.78.0.2/24 dev eth0
timed net sh -c 'dd if=/dev/zero bs=64k count=16 2>/dev/null | nc 10.78.0.1 5001'
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/limits-rootfs.ext4" --size 16 \
    --add "$out/limits-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1

  # The balloon boots (tests/linux/balloon.sh sends these commands on the console).
  cat > "$out/balloon-payload.sh" <<'PAYLOAD'
#!/bin/sh
mkdir -p /t && mount -t tmpfs -o size=240m tmpfs /t
n=0
mib() { awk -v k="$1:" '$1 == k {print int($2 / 1024)}' /proc/meminfo; }
fill() { n=$((n + 1)); dd if=/dev/zero of=/t/f$n bs=1M count="$1" 2>/dev/null; }
fillfree() { fill $(($(mib MemFree) - 8)); }
memtotal() { echo "BALLOON: memtotal $(mib MemTotal)"; }
echo "BALLOON: ready"
while read -r line; do eval "$line"; done
PAYLOAD
  scripts/build-rootfs.sh --out "$out/balloon-rootfs.ext4" --size 16 \
    --add "$out/balloon-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1
  prepare_fs
}

# --add HOST:GUEST for dynamically linked programs and every library ldd names (same paths in
# the guest; the guest sets LD_LIBRARY_PATH, it has no ld.so.cache).
add_programs() {
  local p bin
  for p in "$@"; do
    bin=$(command -v "$p") || { echo "linux-e2e: $p missing (scripts/setup.sh installs it)" >&2; return 1; }
    echo "$bin"
    ldd "$bin" | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}'
  done | sort -u | sed 's/.*/--add &:&/'
}

prepare_fs() {
  local token
  token=$(cat "$out/token")
  mkdir -p "$out/fs-rw" "$out/fs-never" "$out/fs-ro"
  echo "auto-$token" > "$out/fs-rw/host-before.txt"
  echo "never-$token" > "$out/fs-never/host-before.txt"
  echo before > "$out/fs-rw/live.txt"
  echo before > "$out/fs-never/live.txt"
  echo "ro-$token" > "$out/fs-ro/ro-file.txt"
  # Outside every share: no guest may read it through the share's symlinks.
  od -An -N8 -tx8 /dev/urandom | tr -d ' ' | sed 's/^/secret-/' > "$out/fs-secret"
  cp "$out/fs-secret" "$out/outside-secret.txt"
  ln -s "$out/outside-secret.txt" "$out/fs-rw/escape-abs"
  ln -s ../outside-secret.txt "$out/fs-rw/escape-rel"

  cat > "$out/fs-payload.sh" <<'PAYLOAD'
#!/bin/sh
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
t=$(cat /etc/kiln-token)
say() { echo "LINUX-E2E-FS: $*"; }
ok() { if "$@"; then say "ok $name"; else say "FAILED $name"; fi; }
mkdir -p /mnt/rw /mnt/never /mnt/ro /mnt/stress
for m in rw:kilnrw never:kilnnever ro:kilnro stress:kilnstress; do
  mount -t virtiofs "${m#*:}" "/mnt/${m%%:*}" && say "mounted ${m#*:}"
done
say "mounts $(awk '$3 == "virtiofs" {printf "%s:%s:%s ", $1, $2, substr($4, 1, 2)}' /proc/mounts)"
say "host-auto $(cat /mnt/rw/host-before.txt)"
say "host-never $(cat /mnt/never/host-before.txt)"
# Changes the host makes while the guest runs: the guest reads (and caches) live.txt, asks the
# host to rewrite it (live-ready) and reads it again once the host says it did (host-changed):
# at once with cache=never, after the 1 s attribute timeout with cache=auto.
cat /mnt/rw/live.txt /mnt/never/live.txt > /dev/null
touch /mnt/rw/live-ready
i=0; while [ ! -e /mnt/rw/host-changed ] && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
say "live-never $(cat /mnt/never/live.txt)"
sleep 2
say "live-auto $(cat /mnt/rw/live.txt)"
rm -f /mnt/rw/live-ready /mnt/rw/host-changed

w=/mnt/rw/work
mkdir "$w" && cd "$w" || say "FAILED mkdir"
name=create_write_read; echo "hello-$t" > a.txt; ok test "$(cat a.txt)" = "hello-$t"
name=rename; mv a.txt b.txt; ok test -f b.txt -a ! -e a.txt
name=hard_link; ln b.txt hard.txt; ok test "$(stat -c %h b.txt)" = 2
name=symlink; ln -s b.txt sym.txt; ok test "$(readlink sym.txt):$(cat sym.txt)" = "b.txt:hello-$t"
name=truncate; printf 0123456789 > trunc.txt; truncate -s 4 trunc.txt; ok test "$(cat trunc.txt)" = 0123
name=truncate_grow; truncate -s 8192 grown.bin; ok test "$(stat -c %s grown.bin)" = 8192
name=chmod; chmod 0640 b.txt; ok test "$(stat -c %a hard.txt)" = 640
name=xattr; setfattr -n user.kiln -v "$t" b.txt
ok test "$(getfattr --only-values -n user.kiln hard.txt)" = "$t"
name=fsync; dd if=/dev/urandom of=big.bin bs=64k count=16 2>/dev/null; ok sync big.bin
say "big.bin md5 $(md5sum big.bin | cut -d' ' -f1)"
name=delete; echo gone > gone.txt; rm gone.txt; mkdir gone.dir; rmdir gone.dir
ok test ! -e gone.txt -a ! -e gone.dir
name=rename_over; echo new > new.txt; echo old > old.txt; mv new.txt old.txt; ok test "$(cat old.txt)" = new
name=readdir; ok test "$(ls | tr '\n' ' ')" = "b.txt big.bin grown.bin hard.txt old.txt sym.txt trunc.txt "
cd /
for l in escape-abs escape-rel; do
  if cat "/mnt/rw/$l" 2>/dev/null | grep -q secret-; then say "FAILED escape $l"; else say "escape blocked $l"; fi
done

name=ro_read; ok test "$(cat /mnt/ro/ro-file.txt)" = "ro-$t"
for op in "touch /mnt/ro/new.txt" "mkdir /mnt/ro/new.dir" "rm /mnt/ro/ro-file.txt" \
          "chmod 0600 /mnt/ro/ro-file.txt" "mv /mnt/ro/ro-file.txt /mnt/ro/moved.txt"; do
  if $op 2>/dev/null; then say "FAILED ro allowed: $op"; else say "ro refused: $op"; fi
done
if echo x >> /mnt/ro/ro-file.txt; then say "FAILED ro allowed: append"; else say "ro refused: append"; fi

cd /mnt/stress
stress-ng --temp-path /mnt/stress --verify --timeout 15s --metrics-brief \
  --hdd 1 --hdd-bytes 4M --hdd-write-size 16K --dentry 1 --dir 1 \
  --rename 1 --fallocate 1 --fallocate-bytes 4M --seek 1 --seek-size 4M 2>&1
say "stress-ng exit status $?"
cd /
umount /mnt/rw /mnt/never /mnt/ro /mnt/stress && say "unmounted"
poweroff -f
PAYLOAD
  local programs
  programs=$(add_programs stress-ng setfattr getfattr) || return 1
  # shellcheck disable=SC2086  # one option and one path per word
  scripts/build-rootfs.sh --out "$out/fs-rootfs.ext4" --size 96 \
    --add "$out/fs-payload.sh:/etc/kiln-test.sh" --add "$out/token:/etc/kiln-token" \
    $programs >/dev/null || return 1

  cat > "$out/fsroot-payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E-FSROOT: root $(awk '$2 == "/" {print $1, $3, substr($4, 1, 2)}' /proc/mounts)"
echo "guest-wrote $(cat /etc/kiln-token)" > /guest-wrote.txt
sync /guest-wrote.txt && echo "LINUX-E2E-FSROOT: wrote /guest-wrote.txt"
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --dir "$out/fs-rootdir" --add "$out/fsroot-payload.sh:/etc/kiln-test.sh" \
    --add "$out/token:/etc/kiln-token" >/dev/null || return 1
}

# Runs each boot where kiln can run guests; each writes console-NAME.log and rc-NAME.
boots() {
  local kernel token v start
  kernel=$(cat "$out/kernel") token=$(cat "$out/token")
  # Each boot is bounded (status 124 when cut off): a guest that waits for lost input, or
  # hangs, must not hold the run until the nested VM's own limit.
  run() {  # NAME SECONDS COMMAND...: exit status to rc-NAME, seconds to time-NAME
    local name=$1 limit=$2
    shift 2
    start=$(date +%s)
    timeout -k 5 "$limit" "$@"
    echo $? > "$out/rc-$name"
    echo $(($(date +%s) - start)) > "$out/time-$name"
    echo "linux-e2e: $name boot: kiln exited $(cat "$out/rc-$name") after $(cat "$out/time-$name") s"
  }
  run kit 600 build/kiln run --kernel "$kernel" --rootfs "$out/rootfs.ext4" --cmdline "$cmdline" \
    --memory 256 --cpus "$cpus" < /dev/null > "$out/console-kit.log" 2>&1
  run cad 600 tests/linux/ctrl-alt-del.sh "$repo/build/kiln" "$kernel" "$out/cad-rootfs.ext4" \
    "$cmdline" "$out/console-cad.log" > "$out/cad.log" 2>&1
  run snapshot 900 tests/linux/snapshot-clones.sh "$repo/build/kiln" "$kernel" \
    "$out/snap-rootfs.ext4" "$cmdline" "$out" > "$out/snapshot.log" 2>&1
  run stdin 300 sh -c "printf 'echo LINUX-E2E-STDIN:%s; poweroff -f\n' '$token' |
    build/kiln run --kernel '$kernel' --rootfs '$out/stdin-rootfs.ext4' --memory 128" \
    > "$out/console-stdin.log" 2>&1
  # The stress share is in the runner's /tmp (tmpfs in the nested VM): stress-ng's load stays
  # off the 9p view of the repository; its own verification is the check.
  local stress
  stress=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fs-stress.XXXXXX")
  # The host side of the payload's live-change check (bounded like the boot).
  (i=0; while [ ! -e "$out/fs-rw/live-ready" ] && [ $i -lt 600 ]; do sleep 1; i=$((i + 1)); done
   echo "changed-$token-auto" > "$out/fs-rw/live.txt"
   echo "changed-$token-never" > "$out/fs-never/live.txt"
   touch "$out/fs-rw/host-changed") &
  local live=$!
  run fs 600 build/kiln run --kernel "$kernel" --rootfs "$out/fs-rootfs.ext4" --cmdline "$cmdline" \
    --memory 256 --fs "tag=kilnrw,path=$out/fs-rw" --fs "tag=kilnnever,path=$out/fs-never,cache=never" \
    --fs "tag=kilnro,path=$out/fs-ro,ro" --fs "tag=kilnstress,path=$stress,cache=always" \
    < /dev/null > "$out/console-fs.log" 2>&1
  kill "$live" 2>/dev/null; wait "$live" 2>/dev/null
  rm -rf "$stress"
  run fsroot 300 build/kiln run --kernel "$kernel" --fs "tag=root,path=$out/fs-rootdir" \
    --cmdline "$cmdline rootfstype=virtiofs root=root rw" --memory 128 \
    < /dev/null > "$out/console-fsroot.log" 2>&1
  run limits 600 tests/linux/rate-limits.sh "$repo/build/kiln" "$kernel" \
    "$out/limits-rootfs.ext4" "$cmdline" "$out" > "$out/limits-run.log" 2>&1
  run balloon 900 tests/linux/balloon.sh "$repo/build/kiln" "$kernel" \
    "$out/balloon-rootfs.ext4" "$cmdline" "$out" > "$out/balloon-run.log" 2>&1
  v=$(cat "$out/debian-version")
  if [ -n "$v" ]; then
    run debian 900 build/kiln run --kernel "/boot/vmlinuz-$v" --initrd "/boot/initrd.img-$v" \
      --rootfs "$out/debian-rootfs.ext4" --cmdline "$cmdline" --memory 512 --cpus "$cpus" \
      < /dev/null > "$out/console-debian.log" 2>&1
  fi
}

# The fs and fsroot boots (called from check, with its helpers).
check_fs() {
  local w="$out/fs-rw/work" name secret
  secret=$(cat "$out/fs-secret" 2>/dev/null)
  check_ fs_kiln_exit_0 rc fs
  check_ fs_mounted log fs "LINUX-E2E-FS: mounts kilnrw:/mnt/rw:rw kilnnever:/mnt/never:rw kilnro:/mnt/ro:rw kilnstress:/mnt/stress:rw"
  check_ fs_host_file_cache_auto log fs "LINUX-E2E-FS: host-auto auto-$token"
  check_ fs_host_file_cache_never log fs "LINUX-E2E-FS: host-never never-$token"
  check_ fs_live_host_change_cache_never log fs "LINUX-E2E-FS: live-never changed-$token-never"
  check_ fs_live_host_change_cache_auto log fs "LINUX-E2E-FS: live-auto changed-$token-auto"
  for name in create_write_read rename hard_link symlink truncate truncate_grow chmod xattr fsync \
              delete rename_over readdir ro_read; do
    check_ "fs_guest_$name" log fs "LINUX-E2E-FS: ok $name"
  done
  check_ fs_no_guest_failure not_log fs "LINUX-E2E-FS: FAILED"
  # What the host sees afterwards.
  check_ fs_host_content test "$(cat "$w/b.txt" 2>/dev/null)" = "hello-$token"
  check_ fs_host_renamed test ! -e "$w/a.txt"
  check_ fs_host_hard_link test "$(stat -c '%h %i' "$w/b.txt" 2>/dev/null)" = \
    "$(stat -c '2 %i' "$w/hard.txt" 2>/dev/null)"
  check_ fs_host_symlink test "$(readlink "$w/sym.txt" 2>/dev/null)" = b.txt
  check_ fs_host_mode test "$(stat -c %a "$w/b.txt" 2>/dev/null)" = 640
  check_ fs_host_truncated test "$(cat "$w/trunc.txt" 2>/dev/null):$(stat -c %s "$w/grown.bin" 2>/dev/null)" = "0123:8192"
  check_ fs_host_xattr test "$(getfattr --only-values -n user.kiln "$w/b.txt" 2>/dev/null)" = "$token"
  local md5
  md5=$(md5sum "$w/big.bin" 2>/dev/null | cut -d' ' -f1)
  check_ fs_host_data test -n "$md5" -a "$(stat -c %s "$w/big.bin" 2>/dev/null)" = 1048576
  check_ fs_host_data_matches log fs "LINUX-E2E-FS: big.bin md5 ${md5:-none}"
  check_ fs_host_deleted test ! -e "$w/gone.txt" -a ! -e "$w/gone.dir" -a ! -e "$w/new.txt"
  check_ fs_host_listing test "$(LC_ALL=C ls "$w" 2>/dev/null | tr '\n' ' ')" = \
    "b.txt big.bin grown.bin hard.txt old.txt sym.txt trunc.txt "
  check_ fs_symlink_escape_abs log fs "LINUX-E2E-FS: escape blocked escape-abs"
  check_ fs_symlink_escape_rel log fs "LINUX-E2E-FS: escape blocked escape-rel"
  check_ fs_secret_never_shown test -n "$secret" -a -z "$(grep -a -F -- "$secret" "$out/console-fs.log" 2>/dev/null)"
  check_ fs_ro_refused test "$(grep -a -c "LINUX-E2E-FS: ro refused" "$out/console-fs.log" 2>/dev/null)" = 6
  check_ fs_ro_unchanged test "$(LC_ALL=C ls "$out/fs-ro" 2>/dev/null):$(stat -c %a "$out/fs-ro/ro-file.txt"):$(cat "$out/fs-ro/ro-file.txt")" = \
    "ro-file.txt:644:ro-$token"
  check_ fs_stress_ng_passed log fs "LINUX-E2E-FS: stress-ng exit status 0"
  check_ fs_stress_ng_ran log fs "successful run completed"
  check_ fs_unmounted log fs "LINUX-E2E-FS: unmounted"
  check_ fsroot_kiln_exit_0 rc fsroot
  check_ fsroot_root_is_virtiofs log fsroot "LINUX-E2E-FSROOT: root root virtiofs rw"
  check_ fsroot_init_ran log fsroot "kiln-init: running /etc/kiln-test.sh"
  check_ fsroot_guest_file test "$(cat "$out/fs-rootdir/guest-wrote.txt" 2>/dev/null)" = "guest-wrote $token"
}

# The rate-limits boot (called from check, with its helpers). Each transfer must take at least
# 0.9x what its bucket allows (bytes beyond the full bucket at the refill rate; nothing gets
# past a limit) and at most 3x + 3 s (a slow, emulated host).
check_limits() {
  local res="$out/limits.log"
  # NAME SECONDS: the guest's LIMITS line for NAME took between the bounds of SECONDS.
  within() {
    awk -v n="$1" -v e="$2" '$1 == "LIMITS:" && $2 == n {
      d = $4 - $3; printf "linux-e2e: limits %s took %.2f s (bucket: %s s)\n", n, d, e
      ok = d >= 0.9 * e && d <= 3 * e + 3 } END { exit !ok }' "$res"
  }
  check_ limits_kiln_exit_0 rc limits
  check_ limits_drive_bandwidth within bw 2       # 6 MiB, 2 MiB bucket, 2 MiB/s
  check_ limits_drive_ops within ops 3            # 200 requests, 50 bucket, 50/s
  check_ limits_patch_accepted grep -a -q "limits: patch status 204" "$res"
  check_ limits_patch_shown grep -a -q 'limits: patch config \[null\]' "$res"
  # 16 MiB at 1 MiB/s would take 15 s; the limit went after 2 s.
  check_ limits_patch_lifted_the_limit awk '$1 == "LIMITS:" && $2 == "patch" {
    d = $4 - $3; ok = d >= 1.8 && d < 10 } END { exit !ok }' "$res"
  # 1 MiB, 256 KiB bucket, 256 KiB/s: 3 s from the first byte to the last, timed by the host.
  check_ limits_net_tx awk '$2 == "net-host" {
    printf "linux-e2e: limits net took %.2f s (bucket: 3 s)\n", $3
    ok = $5 == 1048576 && $3 >= 2.7 && $3 <= 12 } END { exit !ok }' "$res"
}

# The balloon boots (called from check, with its helpers): see tests/linux/balloon.sh.
check_balloon() {
  local res="$out/balloon.log"
  # AWK_CONDITION on balloon.log's lines (fields as printed: "balloon: WHAT ...").
  holds() { awk "$1 { ok = 1 } END { exit !ok }" "$res"; }
  check_ balloon_kiln_exit_0 rc balloon
  check_ balloon_stats_figures holds '$2 == "stats" && $3 == "total_memory" && $4 > 200 * 1048576 && $6 > 0'
  # Statistics per second at a 1 s interval, then 3 s (each PATCH asks for one at once).
  check_ balloon_stats_at_interval holds '$2 == "stats" && $3 == "per_second" &&
    $5 >= 0.6 && $5 <= 1.3 && $7 >= 0.2 && $7 <= 0.5 && $9 == 204'
  # Fresh figures: the guest's 64 MiB show (within 10 s: a loaded nested VM).
  check_ balloon_stats_fresh holds '$2 == "stats" && $4 == "fell" && $6 != "never" && $6 <= 10'
  check_ balloon_inflate_reached holds '$2 == "inflate" && $3 == "actual_mib" && $4 == 128'
  # 90% of 128 MiB gone from kiln's RSS.
  check_ balloon_inflate_rss_fell holds '$2 == "inflate" && $3 == "patch" && $4 == 204 && $10 >= 115.2'
  check_ balloon_get_shows_target grep -a -q '^balloon: get {"amount_mib":128,' "$res"
  check_ balloon_guest_memtotal_follows awk '$2 == "guest1" && $4 == "memtotal" { m[++n] = $5 }
    END { exit !(n == 3 && m[1] - m[2] >= 127 && m[1] - m[2] <= 129 && m[3] == m[1]) }' "$res"
  check_ balloon_deflate_reached grep -a -q "^balloon: deflate actual_mib 0" "$res"
  # The guest filled more than it could while inflated, and kiln holds it again.
  check_ balloon_deflate_gave_back awk '$2 == "guest1" && $4 == "refilled" && $5 == 0 { r = 1 }
    $2 == "deflate" && $3 == "patch" && $4 == 204 { rss = $6; before = $10 + 0 }
    END { exit !(r && rss >= before - 24) }' "$res"
  check_ balloon_reporting_rss_fell holds '$2 == "reporting" && $3 == "rss" && $8 >= 96'
  check_ balloon_oom_inflate_reached grep -a -q "^balloon: oom inflate actual_mib 192" "$res"
  check_ balloon_oom_fill_succeeded grep -a -q "^balloon: guest2 BALLOON: oom-fill 0" "$res"
  check_ balloon_oom_deflated holds '$2 == "oom" && $3 == "patch" && $4 == 204 && $6 != "" && $6 < 192'
  awk '$2 == "inflate" || $2 == "reporting" || $2 == "stats" {
    print "linux-e2e: " $0 }' "$res"
}

check() {
  local token passed=0 failed=0 skipped=0 cases=""
  token=$(cat "$out/token" 2>/dev/null)
  result() {  # NAME pass|fail|skip
    case $2 in
      pass) passed=$((passed + 1)); cases+="<testcase classname=\"linux\" name=\"$1\"/>" ;;
      skip) skipped=$((skipped + 1))
            cases+="<testcase classname=\"linux\" name=\"$1\"><skipped/></testcase>" ;;
      *) failed=$((failed + 1)); echo "linux-e2e: FAILED: $1" >&2
         cases+="<testcase classname=\"linux\" name=\"$1\"><failure/></testcase>" ;;
    esac
  }
  check_() {  # NAME CONDITION...
    local name=$1
    shift
    if "$@"; then result "$name" pass; else result "$name" fail; fi
  }
  rc() { [ "$(cat "$out/rc-$1" 2>/dev/null)" = 0 ]; }
  log() { grep -a -q -E -- "$2" "$out/console-$1.log" 2>/dev/null; }
  not_log() { [ -f "$out/console-$1.log" ] && ! grep -a -q -E -- "$2" "$out/console-$1.log"; }

  check_ kiln_exit_status_0 rc kit
  check_ disk_found log kit "virtio_blk virtio0: \[vda\]"
  check_ ext4_mounted log kit "EXT4-fs \(vda\): mounted"
  check_ root_read_write log kit "LINUX-E2E: root /dev/root ext4 rw"
  check_ init_ran_from_disk log kit "kiln-init: running /etc/kiln-test.sh"
  check_ host_file_read log kit "LINUX-E2E: host file says $token"
  check_ acpi_tables_read log kit "ACPI: RSDP 0x00000000000E0000"
  check_ uart_irq_from_dsdt log kit "[0-9a-f]{2}:[0-9a-f]{2}: ttyS0 at I/O 0x3f8"
  check_ i8042_from_dsdt log kit "serio: i8042 KBD port at 0x60,0x64 irq"
  check_ acpi_poweroff log kit "reboot: Power down"
  check_ mp_table_found log kit "found SMP MP-table at \[mem 0x0009fc00-0x0009fc0f\]"
  check_ all_cpus_up log kit "smp: Brought up 1 node, $cpus CPU"
  check_ guest_file_on_image test "$(debugfs -R 'cat /guest-wrote.txt' "$out/rootfs.ext4" \
    2>/dev/null)" = "guest-wrote $token"
  check_ ctrl_alt_del_accepted grep -a -q "ctrl-alt-del: api status 204" "$out/cad.log"
  check_ ctrl_alt_del_rebooted log cad "reboot: Restarting system"
  check_ ctrl_alt_del_kiln_exit_0 rc cad
  check_ snapshot_taken grep -a -q "snapshot: pause 204 create 204" "$out/snapshot.log"
  check_ snapshot_source_answered log snap-source "^LINUX-E2E-SNAP: before 42"
  for c in a b; do
    check_ "snapshot_clone_${c}_ran" log "snap-$c" "^LINUX-E2E-SNAP: clone clone-$c after 42"
    check_ "snapshot_clone_${c}_not_booted_again" not_log "snap-$c" "Linux version|kiln-init"
    check_ "snapshot_clone_${c}_exit_0" grep -a -q "snapshot: clone $c exit 0" "$out/snapshot.log"
    check_ "snapshot_clone_${c}_own_disk" test "$(debugfs -R 'cat /clone.txt' \
      "$out/clone-$c.ext4" 2>/dev/null)" = "clone-$c"
  done
  for c in a b; do
    check_ "snapshot_clone_${c}_read_held_share_file" log "snap-$c" \
      "^LINUX-E2E-SNAP: $c held second line"
  done
  # Clone a on the snapshot's share, clone b on its copy (--fs-override).
  check_ snapshot_clone_a_wrote_share test "$(cat "$out/snap-share/from-a.txt" 2>/dev/null)" = \
    clone-a
  check_ snapshot_clone_b_wrote_its_share test "$(cat "$out/snap-share-b/from-b.txt" \
    2>/dev/null)" = clone-b
  check_ snapshot_clone_b_not_on_the_original_share test ! -e "$out/snap-share/from-b.txt"
  check_ snapshot_image_untouched test -z "$(debugfs -R 'cat /clone.txt' \
    "$out/snap-rootfs.ext4" 2>/dev/null)"
  check_ snapshot_kiln_exit_0 rc snapshot
  # The echo's output line (not the echoed input: the shell prints the command it read too).
  check_ stdin_piped_commands_ran log stdin "^LINUX-E2E-STDIN:$token"
  check_ stdin_poweroff_exit_0 rc stdin
  check_fs
  check_limits
  check_balloon
  if [ -n "$(cat "$out/debian-version" 2>/dev/null)" ]; then
    local v
    v=$(cat "$out/debian-version")
    check_ debian_kernel_ran log debian "Linux version ${v//./\\.} .*Debian"
    check_ debian_acpi_disk log debian "virtio_blk virtio[0-9]+: \[vda\]"
    check_ debian_all_cpus_up log debian "smp: Brought up 1 node, $cpus CPU"
    check_ debian_root_mounted log debian "LINUX-E2E-DEBIAN: root /dev/vda ext4 rw"
    check_ debian_payload_ran log debian "LINUX-E2E-DEBIAN: payload ran"
    check_ debian_poweroff log debian "reboot: Power down"
    check_ debian_kiln_exit_0 rc debian
  else
    echo "linux-e2e: no /boot/vmlinuz-VER with /boot/initrd.img-VER: Debian kernel boot skipped"
    result debian_kernel_boot skip
  fi
  echo "<testsuites><testsuite name=\"linux\">$cases</testsuite></testsuites>" > "$out/junit.xml"
  echo "linux-e2e: $passed passed, $failed failed, $skipped skipped (logs: $out)"
  [ "$failed" -eq 0 ]
}

case "${1:-all}" in
  prepare) prepare ;;
  boots) boots ;;
  check) check ;;
  all)
    prepare || exit 1
    if kvm_runs_guests; then
      boots
    else
      NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-900} \
        scripts/nested-kvm/run-in-vm.sh --rw "$repo" "$repo/tests/linux/linux-e2e.sh" boots
    fi
    check
    ;;
  *) echo "usage: $0 [prepare|boots|check]" >&2; exit 2 ;;
esac
