#!/usr/bin/env bash
# Part of the Linux end-to-end test (linux-e2e.sh runs it on KVM, or inside the nested-KVM VM):
# virtio-balloon with the kit's kernel, measured from the host. ROOTFS's payload runs each
# console line it reads (balloon-payload.sh from linux-e2e.sh prepare); the host drives it
# through a FIFO and the API (curl). Two boots of 256 MiB:
#  1. --balloon 0,stats=1:
#     - statistics: the device's metrics (FlushMetrics) count the statistics the guest sent
#       over 6 s at the 1 s interval, then over 9 s after PATCH /balloon/statistics 3 s; the
#       guest fills 64 MiB of tmpfs and GET /balloon/statistics shows free_memory fall by at
#       least 60 MiB;
#     - inflate: the guest fills all its free memory but 8 MiB and frees it (every page of its
#       RAM is then resident in kiln); PATCH /balloon 128 MiB; once the guest says actual_mib
#       128, kiln's RSS (VmRSS) fell by the inflated memory; GET /balloon shows 128; the
#       guest's MemTotal shrank by 128 MiB;
#     - deflate: PATCH /balloon 0; actual_mib 0, the guest's MemTotal is back and it fills
#       all its free memory again (more than it had while inflated): kiln's RSS is back up.
#  2. --balloon 0,deflate_on_oom,reporting,stats=1 (actual_mib is in the statistics):
#     - free page reporting: the guest fills all its free memory but 8 MiB and frees it; with
#       no inflate, kiln's RSS falls by at least half of that (the guest reports free 2 MiB
#       blocks);
#     - deflate on OOM: PATCH /balloon 192; the guest then writes 100 MiB into tmpfs, more than
#       it has left: the write succeeds (the driver deflates under the OOM pressure) and
#       actual_mib falls below 192.
# Writes OUT/balloon.log ("balloon: ..." lines, checked by linux-e2e.sh check) and the consoles
# OUT/console-balloon{1,2}.log; exits with the last kiln's status (non-zero if either failed).
#
#   tests/linux/balloon.sh KILN KERNEL ROOTFS CMDLINE OUT
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 cmdline=$4 out=$5
res="$out/balloon.log"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kiln-balloon.XXXXXX")"
trap 'exec 3>&- 2>/dev/null; rm -rf "$tmp"' EXIT
sock="$tmp/api.sock"
: > "$res"
note() { echo "balloon: $*" >> "$res"; }

pid="" log=""
# Waits up to SECONDS for the Nth (default 1st) console line with TEXT.
wait_for() {  # TEXT SECONDS [N]
  local i
  for i in $(seq $(($2 * 4))); do
    [ "$(grep -a -c -- "$1" "$log")" -ge "${3:-1}" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}
api() {  # METHOD PATH [BODY]: prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X "$1" "http://localhost$2" \
    -H 'Content-Type: application/json' ${3:+-d "$3"}
}
stat_of() {  # FIELD: GET /balloon/statistics's FIELD (empty if absent)
  curl -s --unix-socket "$sock" http://localhost/balloon/statistics |
    python3 -c "import json, sys; print(json.load(sys.stdin).get('$1', ''))" 2>/dev/null
}
# The statistics buffers the device received so far (a FlushMetrics line), and when.
stats_updates() {
  api PUT /actions '{"action_type": "FlushMetrics"}' > /dev/null
  echo "$(date +%s.%N) $(tail -n 1 "$tmp/metrics.json" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["balloon"]["stats_updates_count"])')"
}
# Statistics per second between two stats_updates answers.
per_second() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
  printf "%.2f", (y[2] - x[2]) / (y[1] - x[1]) }'; }
rss_mib() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$pid/status"; }
# Waits up to SECONDS for actual_mib to be MIB.
wait_actual() {  # MIB SECONDS
  local i
  for i in $(seq $(($2 * 4))); do
    [ "$(stat_of actual_mib)" = "$1" ] && return 0
    sleep 0.25
  done
  return 1
}
# Guest commands. fill N: N MiB more in tmpfs; fillfree: all free memory but 8 MiB.
send() { echo "$*" >&3; }
boot() {  # NAME BALLOON_SPEC
  log="$out/console-$1.log"
  rm -f "$tmp/in.fifo" "$sock"
  mkfifo "$tmp/in.fifo"
  printf '[boot-source]\nkernel_image_path = "%s"\n[metrics]\nmetrics_path = "%s"\n' \
    "$kernel" "$tmp/metrics.json" > "$tmp/vm.toml"
  "$kiln" run --config "$tmp/vm.toml" --kernel "$kernel" --rootfs "$rootfs" --cmdline "$cmdline" \
    --memory 256 --balloon "$2" --api-sock "$sock" < "$tmp/in.fifo" > "$log" 2>&1 &
  pid=$!
  exec 3> "$tmp/in.fifo"
  wait_for "BALLOON: ready" 300
}
finish() {  # NAME: powers the guest off; notes kiln's exit status
  send "poweroff -f"
  local i rc
  for i in $(seq 240); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  wait "$pid"
  rc=$?
  exec 3>&-
  note "$1 exit $rc"
}

# --- 1: statistics, inflate, deflate.
if boot balloon1 "0,stats=1"; then
  sleep 3
  u0=$(stats_updates); sleep 6; u1=$(stats_updates)
  code=$(api PATCH /balloon/statistics '{"stats_polling_interval_s": 3}')
  u2=$(stats_updates); sleep 9; u3=$(stats_updates)
  note "stats per_second 1s $(per_second "$u0" "$u1") 3s $(per_second "$u2" "$u3") patch $code"
  api PATCH /balloon/statistics '{"stats_polling_interval_s": 1}' > /dev/null
  sleep 2
  free0=$(stat_of free_memory)
  note "stats total_memory $(stat_of total_memory) free_memory $free0"
  send 'fill 64; echo "BALLOON: filled $?"'
  if wait_for "BALLOON: filled 0" 120; then
    t0=$(date +%s.%N)
    fell=""
    for _ in $(seq 40); do
      f=$(stat_of free_memory)
      if [ -n "$f" ] && [ -n "$free0" ] && [ "$f" -le $((free0 - 60 * 1048576)) ]; then
        fell=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
        break
      fi
      sleep 0.25
    done
    note "stats free_memory fell after ${fell:-never} s"
  fi
  send 'rm -f /t/*; fillfree; echo "BALLOON: touched $?"; rm -f /t/*; memtotal'
  wait_for "BALLOON: touched 0" 300 && wait_for "BALLOON: memtotal" 30
  before=$(rss_mib)
  code=$(api PATCH /balloon '{"amount_mib": 128}')
  wait_actual 128 120 && note "inflate actual_mib 128"
  after=$(rss_mib)
  note "inflate patch $code rss $before -> $after fell $((before - after)) MiB"
  note "get $(curl -s --unix-socket "$sock" http://localhost/balloon)"
  send 'memtotal'
  wait_for "BALLOON: memtotal" 30 2
  code=$(api PATCH /balloon '{"amount_mib": 0}')
  wait_actual 0 120 && note "deflate actual_mib 0"
  send 'memtotal; fillfree; echo "BALLOON: refilled $?"'
  wait_for "BALLOON: refilled [0-9]" 300
  note "deflate patch $code rss $(rss_mib) (before the inflate $before)"
  finish boot1
fi
# The guest's own lines (the console also echoes the commands it read).
grep -a "^BALLOON:" "$out/console-balloon1.log" | tr -d '\r' | sed 's/^/balloon: guest1 /' >> "$res"

# --- 2: free page reporting, deflate on OOM.
if boot balloon2 "0,deflate_on_oom,reporting,stats=1"; then
  send 'fillfree; echo "BALLOON: full $?"'
  if wait_for "BALLOON: full 0" 300; then
    full=$(rss_mib)
    send 'rm -f /t/*; echo "BALLOON: freed $?"'
    wait_for "BALLOON: freed [0-9]" 30
    low=$full
    for _ in $(seq 120); do
      low=$(rss_mib)
      [ "$low" -le $((full - 96)) ] && break
      sleep 0.5
    done
    note "reporting rss $full -> $low fell $((full - low)) MiB"
  fi
  code=$(api PATCH /balloon '{"amount_mib": 192}')
  wait_actual 192 120 && note "oom inflate actual_mib 192"
  send 'fill 100; echo "BALLOON: oom-fill $?"'
  wait_for "BALLOON: oom-fill [0-9]" 300
  note "oom patch $code actual_mib $(stat_of actual_mib)"
  finish boot2
fi
grep -a "^BALLOON:" "$out/console-balloon2.log" | tr -d '\r' | sed 's/^/balloon: guest2 /' >> "$res"
grep -q "boot1 exit 0" "$res" && grep -q "boot2 exit 0" "$res"
