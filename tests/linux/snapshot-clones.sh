#!/usr/bin/env bash
# Part of the Linux end-to-end test (linux-e2e.sh runs it on KVM, or inside the nested-KVM VM):
# a Linux guest snapshotted at a shell and restored twice at once, each clone on its own copy
# of the disk.
#  1. boots KERNEL with ROOTFS (whose payload runs each console line it reads) through
#     `kiln run --api-sock`; once it answered a first command, PATCH /vm Paused and PUT
#     /snapshot/create (curl), then kills that kiln;
#  2. copies the disk twice and starts two `kiln --restore ... --drive-override rootfs=COPY`
#     at once; each clone gets a command that writes /clone.txt on its disk and powers off.
# Console logs: DIR/console-snap-{source,a,b}.log, the clones' disks DIR/clone-{a,b}.ext4; the
# snapshot and the console pipes stay in a temporary directory (the nested VM's tmpfs: DIR is
# its 9p view of the repository there). Prints "snapshot: pause N create N" and
# "snapshot: clone X exit N"; exits 0 only if every step did.
#
#   tests/linux/snapshot-clones.sh KILN KERNEL ROOTFS CMDLINE DIR
set -uo pipefail
kiln=$1 kernel=$2 rootfs=$3 cmdline=$4 dir=$5
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kiln-snap.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
sock="$tmp/api.sock"

wait_for() {  # LOG TEXT PID SECONDS
  local i
  for i in $(seq $(($4 * 2))); do
    grep -a -q -- "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}
api() {  # METHOD PATH BODY: prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X "$1" "http://localhost$2" \
    -H 'Content-Type: application/json' -d "$3"
}

mkfifo "$tmp/source.fifo"
# The share the guest mounts (tag snapfs); its shell holds held.txt open across the snapshot.
rm -rf "$dir/snap-share" && mkdir -p "$dir/snap-share"
printf 'first line\nsecond line\n' > "$dir/snap-share/held.txt"
"$kiln" run --kernel "$kernel" --rootfs "$rootfs" --cmdline "$cmdline" --memory 256 \
  --fs "tag=snapfs,path=$dir/snap-share" \
  --api-sock "$sock" < "$tmp/source.fifo" > "$dir/console-snap-source.log" 2>&1 &
pid=$!
exec 3> "$tmp/source.fifo"
status=0
if wait_for "$dir/console-snap-source.log" "LINUX-E2E-SNAP: ready" "$pid" 300; then
  echo 'exec 7< /mnt/share/held.txt; read -r first <&7; echo "LINUX-E2E-SNAP: before $((6 * 7)) $first"' >&3
  wait_for "$dir/console-snap-source.log" "LINUX-E2E-SNAP: before 42" "$pid" 60 || status=1
else
  status=1
fi
pause=$(api PATCH /vm '{"state": "Paused"}')
create=$(api PUT /snapshot/create \
  "{\"snapshot_path\": \"$tmp/snap.state\", \"mem_file_path\": \"$tmp/snap.mem\"}")
echo "snapshot: pause $pause create $create"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exec 3>&-
[ "$pause" = 204 ] && [ "$create" = 204 ] || exit 1

pids=()
# Clone b also gets its own copy of the share (--fs-override): the file its shell holds is
# opened again there.
rm -rf "$dir/snap-share-b" && cp -a "$dir/snap-share" "$dir/snap-share-b"
for c in a b; do
  cp --sparse=always "$rootfs" "$dir/clone-$c.ext4"
  mkfifo "$tmp/$c.fifo"
  share=()
  [ $c = b ] && share=(--fs-override "fs0=$dir/snap-share-b")
  "$kiln" --restore "$tmp/snap.state" --mem "$tmp/snap.mem" \
    --drive-override "rootfs=$dir/clone-$c.ext4" "${share[@]}" \
    < "$tmp/$c.fifo" > "$dir/console-snap-$c.log" 2>&1 &
  pids+=($!)
done
exec 4> "$tmp/a.fifo" 5> "$tmp/b.fifo"
# Both clones run at once; each writes its own disk.
for c in a b; do
  fd=4
  [ $c = b ] && fd=5
  echo "read -r next <&7; echo \"LINUX-E2E-SNAP: $c held \$next\"; echo clone-$c > /mnt/share/from-$c.txt; echo clone-$c > /clone.txt; sync; echo \"LINUX-E2E-SNAP: clone \$(cat /clone.txt) after \$((6 * 7))\"; poweroff -f" >&$fd
done
i=0
for c in a b; do
  p=${pids[$i]}
  i=$((i + 1))
  for _ in $(seq 240); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$p" 2>/dev/null; then
    kill -9 "$p"
    wait "$p"
    rc=124
  else
    wait "$p"
    rc=$?
  fi
  echo "snapshot: clone $c exit $rc"
  [ "$rc" = 0 ] || status=1
done
exec 4>&- 5>&-
exit $status
