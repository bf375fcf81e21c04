#!/usr/bin/env bash
# Part of the Linux end-to-end test (linux-e2e.sh runs it directly on KVM, or inside the
# nested-KVM VM): the kit's kernel with rate-limited devices, measured from the guest and the
# host. Boots KERNEL with ROOTFS (its payload: limits-payload.sh from linux-e2e.sh prepare) and
#   vdb  6 MiB, --disk bw=2097152 (2 MiB/s, a 2 MiB bucket: the first 2 MiB go at once)
#   vdc  1 MiB, --disk ops=50 (50 requests/s; the guest reads 200 x 4 KiB with O_DIRECT)
#   vdd 16 MiB, --disk bw=1048576, the limit removed with PATCH /drives (size 0) 2 s into the
#       guest's read of it
#   eth0 on TAP kiln-lim0, tx_bw=262144 (256 KiB/s): the guest sends 1 MiB over TCP to a sink
#       here that times the bytes from first to last
# and writes OUT/limits.log: the guest's "LIMITS: NAME T0 T1" lines (its /proc/uptime), the
# sink's "limits: net-host SECONDS", the PATCH status and GET /vm/config's limiter after it.
# linux-e2e.sh check compares each with what the bucket allows.
#
#   tests/linux/rate-limits.sh KILN KERNEL ROOTFS CMDLINE OUT
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 cmdline=$4 out=$5
log="$out/console-limits.log" res="$out/limits.log"
sock="$(mktemp -u /tmp/kiln-limits-XXXXXX.sock)"
: > "$res"
for f in bw:6 ops:1 patch:16; do
  truncate -s "${f#*:}M" "$out/limit-${f%%:*}.img"
done
tap=kiln-lim0
ip link del "$tap" 2>/dev/null
if ! ip tuntap add dev "$tap" mode tap || ! ip addr add 10.78.0.1/24 dev "$tap" ||
  ! ip link set "$tap" up; then
  echo "limits: cannot make TAP $tap (needs CAP_NET_ADMIN)" >> "$res"
fi
# The TCP sink: 1 MiB from the guest, timed from its first byte to the last.
python3 - >> "$res" 2>&1 <<'PY' &
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.78.0.1", 5001))
s.listen(1)
s.settimeout(600)
c, _ = s.accept()
want, got, first = 1 << 20, 0, None
while got < want:
    b = c.recv(65536)
    if not b:
        break
    if first is None:
        first = time.monotonic()
    got += len(b)
print(f"limits: net-host {time.monotonic() - first:.2f} bytes {got}", flush=True)
c.close()
PY
sink=$!
"$kiln" run --kernel "$kernel" --rootfs "$rootfs" --cmdline "$cmdline" --memory 256 \
  --disk "$out/limit-bw.img,ro,id=bw,bw=2097152" --disk "$out/limit-ops.img,ro,id=ops,ops=50" \
  --disk "$out/limit-patch.img,ro,id=patch,bw=1048576" \
  --net "tap=$tap,mac=52:54:00:78:00:02,tx_bw=262144" \
  --api-sock "$sock" < /dev/null > "$log" 2>&1 &
pid=$!
for _ in $(seq 1200); do
  grep -a -q "LIMITS: patch-start" "$log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
sleep 2
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X PATCH \
  http://localhost/drives/patch \
  -d '{"drive_id": "patch", "rate_limiter": {"bandwidth": {"size": 0, "refill_time": 0}}}')
echo "limits: patch status $code" >> "$res"
echo "limits: patch config $(curl -s --unix-socket "$sock" http://localhost/vm/config |
  python3 -c 'import json, sys
print(json.dumps([d["rate_limiter"] for d in json.load(sys.stdin)["drives"] if d["drive_id"] == "patch"]))')" >> "$res"
for _ in $(seq 600); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
  kill -9 "$pid"
  rc=124
else
  wait "$pid"
  rc=$?
fi
kill "$sink" 2>/dev/null
wait "$sink" 2>/dev/null
grep -a "^LIMITS:" "$log" >> "$res"
ip link del "$tap" 2>/dev/null
rm -f "$out"/limit-*.img
exit "$rc"
