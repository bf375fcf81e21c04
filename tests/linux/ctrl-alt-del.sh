#!/usr/bin/env bash
# Part of the Linux end-to-end test (linux-e2e.sh runs it directly on KVM, or inside the
# nested-KVM VM): boots KERNEL with ROOTFS through `kiln run --api-sock`, waits until the guest
# prints "LINUX-E2E: waiting for Ctrl-Alt-Del", sends PUT /actions SendCtrlAltDel with curl and
# waits for kiln to exit. Prints "ctrl-alt-del: api status <code>" and exits with kiln's status
# (124 if it did not stop within 120 s of the keys).
#
#   tests/linux/ctrl-alt-del.sh KILN KERNEL ROOTFS CMDLINE CONSOLE_LOG
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 cmdline=$4 log=$5
sock="$(mktemp -u /tmp/kiln-cad-XXXXXX.sock)"
"$kiln" run --kernel "$kernel" --rootfs "$rootfs" --cmdline "$cmdline" --memory 256 \
  --api-sock "$sock" < /dev/null > "$log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  grep -a -q "LINUX-E2E: waiting for Ctrl-Alt-Del" "$log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X PUT \
  http://localhost/actions -d '{"action_type": "SendCtrlAltDel"}')
echo "ctrl-alt-del: api status $code"
for _ in $(seq 240); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
  kill -9 "$pid"
  wait "$pid"
  exit 124
fi
wait "$pid"
