#!/bin/sh
# The virtio-fs benchmark's operations (scripts/bench.sh --fs): run with the same busybox by a
# Linux guest on its virtio-fs mount and by the host on the shared directory itself, so the two
# columns differ only in the path to the files. Prints "FSBENCH LABEL key=value" lines.
#
#   sh bench/fs_ops.sh DIR LABEL [MiB] [FILES]
#
# Phases: an untimed warm-up (the file written and unlinked once: under nested KVM the first
# touch of each guest page is a costly nested page fault, which made the first share's write
# 2-5x slower than the second's); write MiB (default 64) in 1 MiB blocks with conv=fsync; drop
# the page cache (root only; noted as drop_caches=0 where it cannot); read the file twice (the
# second read may come from this side's page cache); create FILES (default 500) small files
# with the shell's own redirection, stat them (one stat process), unlink them (one rm process).
# Times are monotonic nanoseconds from /proc/timer_list (root), else /proc/uptime (10 ms).
d=$1 label=$2 mib=${3:-64} n=${4:-500}
bb=busybox
say() { echo "FSBENCH $label $*"; }
[ -d "$d" ] || { say "FAILED no directory $d"; exit 1; }
# shellcheck disable=SC2016  # awk's own $3 and $1
if [ -r /proc/timer_list ]; then
  now() { $bb awk '/^now at/ {print $3; exit}' /proc/timer_list; }
  say "clock=timer_list"
else
  now() { $bb awk '{printf "%.0f\n", $1 * 1e9}' /proc/uptime; }
  say "clock=uptime_10ms"
fi
# Prints "OP_UNIT=RATE OP_s=SECONDS" for COUNT units done between START and END nanoseconds.
rate() { $bb awk -v op="$1" -v u="$2" -v c="$3" -v a="$4" -v b="$5" 'BEGIN {
  s = (b - a) / 1e9; if (s <= 0) s = 1e-9
  printf "%s_%s=%.1f %s_s=%.4f\n", op, u, c / s, op, s }'; }

w=$d/fsbench-$$
if ! $bb rm -rf "$w" || ! $bb mkdir -p "$w/m"; then say "FAILED mkdir $w"; exit 1; fi

$bb dd if=/dev/zero of="$w/big" bs=1M count="$mib" conv=fsync 2>/dev/null || say "FAILED warm-up"
$bb rm -f "$w/big"
t0=$(now)
$bb dd if=/dev/zero of="$w/big" bs=1M count="$mib" conv=fsync 2>/dev/null || say "FAILED write"
t1=$(now)
say "$(rate write MBps "$mib" "$t0" "$t1")"

$bb sync
if echo 3 2>/dev/null > /proc/sys/vm/drop_caches; then
  say "drop_caches=1"
else
  say "drop_caches=0"
fi
t0=$(now)
$bb dd if="$w/big" of=/dev/null bs=1M 2>/dev/null || say "FAILED read"
t1=$(now)
$bb dd if="$w/big" of=/dev/null bs=1M 2>/dev/null || say "FAILED reread"
t2=$(now)
say "$(rate read MBps "$mib" "$t0" "$t1")"
say "$(rate reread MBps "$mib" "$t1" "$t2")"
$bb rm -f "$w/big"

# The file list is built first, so no readdir is timed.
files=$(i=1; while [ $i -le "$n" ]; do echo "$w/m/f$i"; i=$((i + 1)); done)
t0=$(now)
for f in $files; do echo x > "$f"; done
t1=$(now)
# shellcheck disable=SC2086  # one path per word
$bb stat -c %s $files > /dev/null || say "FAILED stat"
t2=$(now)
# shellcheck disable=SC2086
$bb rm $files || say "FAILED unlink"
t3=$(now)
say "$(rate create per_s "$n" "$t0" "$t1")"
say "$(rate stat per_s "$n" "$t1" "$t2")"
say "$(rate unlink per_s "$n" "$t2" "$t3")"
$bb rm -rf "$w"
say "done"
