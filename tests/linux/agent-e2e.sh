#!/usr/bin/env bash
# The guest agent booted for real: `kiln sandbox run` boots the kit's kernel with the agent's
# initramfs (build/agent/kiln-agent.cpio) and a busybox ext4 image as the workload's root
# (kiln.root=/dev/vda kiln.rootfstype=ext4), reaches kiln-agent over vsock, runs one command
# per boot and exits with its status once the agent powered the VM off (ACPI S5: kiln run 0).
# Cases: stdout byte-exact; exit 3; stderr kept apart; a signal (137); -e/-w and the hostname;
# stdin (-i); an orphan holding stdout (reaped, VM still powers off); 1 MiB of binary data
# through stdout (sha256); SIGTERM to kiln reaching the workload; -t (a pty, 24x80 without a
# host terminal); a directory as the root (virtio-fs: a host file read, a guest write seen on
# the host); -u UID:GID; -v volumes, read-write and read-only; a busybox image made with
# `podman import` and saved with `podman save` (docker-archive) run from its archive with the
# image's Cmd, Env and WorkingDir, then again from the cache with a command that writes to
# its root (the cached image is not changed: a tmpfs overlay takes the writes); a named
# sandbox managed while it runs (ls, exec, kill, rm; see named()); --net (see net()); a hostile agent breaking the
# protocol six ways, each reported as Kiln's error (see hostile()). kiln run's own status is
# checked by `kiln sandbox run`: an unclean VM exit is reported on stderr, which each case
# expects exactly.
#
#   tests/linux/agent-e2e.sh          prepare, boot (here on VMX/SVM KVM, else in the
#                                     nested-KVM VM: scripts/nested-kvm/), check
#   tests/linux/agent-e2e.sh prepare  the kernel, the image (scripts/test.sh runs the phases)
#   tests/linux/agent-e2e.sh boots    only the boots, here (what the nested VM runs)
#   tests/linux/agent-e2e.sh check    check the outputs; writes build/agent-test/junit.xml
# Outputs stay in build/agent-test/ (NAME.out, NAME.err, NAME.rc, NAME.console).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build/agent-test"
cd "$repo"
# shellcheck source=../../scripts/lib/kvm-host.sh
. "$repo/scripts/lib/kvm-host.sh"

prepare() {
  rm -rf "$out" && mkdir -p "$out"
  scripts/build-guest-kernel.sh --out build/guest-kernel >/dev/null || return 1
  [ -f build/agent/kiln-agent.cpio ] || { echo "agent-e2e: build/agent/kiln-agent.cpio missing (ninja -C build)" >&2; return 1; }
  head -c 1048576 /dev/urandom > "$out/blob.bin"
  scripts/build-rootfs.sh --out "$out/rootfs.ext4" --size 24 \
    --add "$out/blob.bin:/blob.bin" >/dev/null || return 1
  scripts/build-rootfs.sh --dir "$out/rootdir" >/dev/null || return 1
  echo host-marker > "$out/rootdir/marker"
  mkdir -p "$out/vol" "$out/volro"
  # The image: podman's state in a scratch directory, never the machine's storage.
  local pm="$out/podman"
  tar -C "$out/rootdir" -cf "$out/rootdir.tar" . || return 1
  podman --root "$pm/root" --runroot "$pm/run" --storage-driver vfs import \
    --change 'ENV GREETING=from-image' --change 'WORKDIR /root' \
    --change 'CMD ["sh", "-c", "echo $GREETING $(pwd)"]' "$out/rootdir.tar" kiln-test-busybox \
    >/dev/null || { echo "agent-e2e: podman import failed" >&2; return 1; }
  podman --root "$pm/root" --runroot "$pm/run" --storage-driver vfs save --format docker-archive \
    -o "$out/busybox.tar" kiln-test-busybox >/dev/null 2>&1 || { echo "agent-e2e: podman save failed" >&2; return 1; }
  chmod -R u+w "$pm" 2>/dev/null; rm -rf "$pm" "$out/rootdir.tar"
  echo vol-in > "$out/vol/in"
  echo volro-in > "$out/volro/in"
}

# A named sandbox managed while it runs: ls, exec (the workload's env and cwd as defaults, its
# own status and stderr), a second run of the same name refused, kill NAME TERM, ls -a showing
# the exit, exec refused after it, rm; --rm leaves no record. The image's missing WorkingDir
# (-w here) is made. Each step's output: named-STEP.{out,err,rc}.
named() {
  # A registry of its own: ls lists only what these steps made.
  local KILN_SANDBOX_DIR step pid i
  KILN_SANDBOX_DIR=$(mktemp -d /tmp/kiln-e2e-named.XXXXXX)
  export KILN_SANDBOX_DIR
  local sbx=$KILN_SANDBOX_DIR
  step() {  # STEP CMD...: kiln's output into named-STEP.*
    local name=$1
    shift
    timeout -k 5 120 "$@" < /dev/null > "$out/named-$name.out" 2> "$out/named-$name.err"
    echo $? > "$out/named-$name.rc"
  }
  cp "$out/rootfs.ext4" "$out/named.ext4"
  timeout -k 5 600 build/kiln sandbox run --name web -e ROLE=main -w /srv/app \
    --console-log "$out/named.console" "$out/named.ext4" -- sh -c \
    'trap "echo got-term; exit 5" TERM; echo "up in $(pwd)"; while :; do sleep 1; done' \
    < /dev/null > "$out/named.out" 2> "$out/named.err" &
  pid=$!
  for i in $(seq 1500); do grep -q "up in" "$out/named.out" && break; sleep 0.2; done
  step ls build/kiln sandbox ls
  step exec build/kiln sandbox exec -e EXTRA=1 web -- sh -c \
    'echo "$ROLE $EXTRA $(pwd)"; echo exec-err >&2; exit 4'
  step exec-w build/kiln sandbox exec -w /nonexistent web -- true
  step exec-missing build/kiln sandbox exec web -- /no/such/command
  step dup build/kiln sandbox run --name web "$out/named.ext4" -- true
  # An exec'd process still running when the workload ends is ended with the sandbox.
  build/kiln sandbox exec web -- sh -c 'echo exec-long; exec sleep 1000' < /dev/null \
    > "$out/named-long.out" 2> "$out/named-long.err" &
  local long=$!
  for i in $(seq 300); do grep -q exec-long "$out/named-long.out" && break; sleep 0.2; done
  step kill build/kiln sandbox kill web TERM
  wait "$pid"
  echo $? > "$out/named.rc"
  wait "$long"
  echo $? > "$out/named-long.rc"
  step ls-all build/kiln sandbox ls -a
  step exec-after build/kiln sandbox exec web -- true
  step rm build/kiln sandbox rm web
  step ls-gone build/kiln sandbox ls -a -q
  [ -e "$sbx/web" ] && echo "named: $sbx/web is still there" >> "$out/named-rm.err"
  rm -f "$out/named.ext4"
  sb rmflag --rm --name temp "$out/rmflag.ext4" -- true
  # kill -9 of `kiln sandbox run`: its VM goes with it, the record shows dead, rm clears it.
  cp "$out/rootfs.ext4" "$out/victim.ext4"
  build/kiln sandbox run --name victim --console-log "$out/victim.console" "$out/victim.ext4" \
    -- sh -c 'echo up; while :; do sleep 1; done' < /dev/null > "$out/victim.out" 2>&1 &
  pid=$!
  for i in $(seq 1500); do grep -q up "$out/victim.out" && break; sleep 0.2; done
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  for i in $(seq 50); do pgrep -f "uds=$sbx/victim/vsock" > /dev/null || break; sleep 0.2; done
  pgrep -f "uds=$sbx/victim/vsock" > /dev/null && echo "the VM outlived its kiln sandbox run" \
    > "$out/named-orphan.err"
  step ls-dead build/kiln sandbox ls -a
  step rm-dead build/kiln sandbox rm victim
  rm -f "$out/victim.ext4"
  step ls-rm build/kiln sandbox ls -a -q
  echo "agent-e2e: named: exit $(cat "$out/named.rc")"
}

# --net: a TAP with the host's side at 10.77.0.1; the agent sets eth0 (address, MTU, default
# route) and /etc/resolv.conf, and the guest pings the host. Making a TAP needs root (always so
# in the nested VM); elsewhere the case is skipped, saying so.
net() {
  if ! ip tuntap add dev kiln-e2e0 mode tap 2>/dev/null; then
    echo "needs root (CAP_NET_ADMIN) to make a TAP" > "$out/net.skip"
    return
  fi
  ip addr add 10.77.0.1/24 dev kiln-e2e0 && ip link set kiln-e2e0 up
  sb net --net tap=kiln-e2e0,ip=10.77.0.2/24,gw=10.77.0.1,mtu=1400,dns=10.77.0.1 \
    "$out/net.ext4" -- sh -c 'ip -4 addr show eth0 | grep -o "inet [0-9./]*"
      cat /sys/class/net/eth0/mtu; ip route | grep -o "default via [0-9.]*"; cat /etc/resolv.conf
      ping -c 1 -W 10 10.77.0.1 > /dev/null && echo ping-ok'
  # The same, warm (a directory root: --warm takes no disk): the snapshot's NIC was on a TAP made
  # for its boot; this sandbox's is restored on kiln-e2e0 with its own MAC.
  local cache
  cache=$(mktemp -d /tmp/kiln-e2e-warmnet.XXXXXX)
  KILN_CACHE="$cache" sb net-warm --warm \
    --net tap=kiln-e2e0,mac=52:54:00:77:00:03,ip=10.77.0.3/24,gw=10.77.0.1 "$out/rootdir" -- \
    sh -c 'cat /sys/class/net/eth0/address; ip -4 addr show eth0 | grep -o "inet [0-9./]*"
      ping -c 1 -W 10 10.77.0.1 > /dev/null && echo ping-ok'
  rm -rf "$cache"
  ip link del kiln-e2e0
}

# A hostile agent (tests/agent/hostile_agent.cc) in place of kiln-agent, one boot per way of
# breaking the protocol: kiln sandbox run must report it and stop the VM (exit 125).
hostile() {
  local mode
  mkdir -p "$out/hostile-vol"
  for mode in garbage huge close silent bad-exit stdin-data; do
    timeout -k 5 300 build/kiln sandbox run --rm --initrd build/tests/hostile-agent.cpio \
      --console-log "$out/hostile-$mode.console" -v "$out/hostile-vol:/hostile/$mode" \
      "$out/rootdir" -- true < /dev/null > "$out/hostile-$mode.out" 2> "$out/hostile-$mode.err"
    echo $? > "$out/hostile-$mode.rc"
    echo "agent-e2e: hostile-$mode: exit $(cat "$out/hostile-$mode.rc")"
  done
}

boots() {
  # Sandbox records and sockets in a scratch directory (sockets cannot live on a 9p share).
  KILN_SANDBOX_DIR=$(mktemp -d /tmp/kiln-e2e-sandboxes.XXXXXX)
  export KILN_SANDBOX_DIR
  # One boot per case, each on its own copy of the image (a run writes to its disk).
  sb() {  # NAME [sandbox options] -- CMD...; stdin from $in (default /dev/null)
    local name=$1 start
    shift
    cp "$out/rootfs.ext4" "$out/$name.ext4"
    start=$(date +%s)
    timeout -k 5 600 build/kiln sandbox run --console-log "$out/$name.console" "$@" \
      < "${in:-/dev/null}" > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
    rm -f "$out/$name.ext4"
    echo "agent-e2e: $name: exit $(cat "$out/$name.rc") after $(($(date +%s) - start)) s"
  }
  sb echo "$out/echo.ext4" -- echo hi
  sb exit3 "$out/exit3.ext4" -- sh -c 'exit 3'
  sb stderr "$out/stderr.ext4" -- sh -c 'echo to-out; echo to-err >&2; echo more-out'
  sb signal "$out/signal.ext4" -- sh -c 'kill -9 $$'
  sb envcwd -e FOO=bar -w /tmp "$out/envcwd.ext4" -- sh -c 'echo "$FOO $(pwd) $(hostname)"'
  printf 'line one\nline two\n' > "$out/stdin.in"
  in="$out/stdin.in" sb stdin -i "$out/stdin.ext4" -- sh -c 'cat; echo end'
  sb orphan "$out/orphan.ext4" -- sh -c 'sleep 1000 & echo parent-done'
  sb blob "$out/blob.ext4" -- cat /blob.bin
  sb tty -t "$out/tty.ext4" -- sh -c 'test -t 0 && test -t 1 && test -t 2 && echo tty; stty size'
  sb dirroot "$out/rootdir" -- sh -c 'cat /marker; echo from-guest > /written'
  sb user -u 1000:1001 "$out/user.ext4" -- sh -c 'id -u; id -g; touch /tmp/f && stat -c "%u %g" /tmp/f'
  sb volume -v "$out/vol:/data" -v "$out/volro:/mnt/ro:ro" "$out/volume.ext4" -- sh -c \
    'cat /data/in /mnt/ro/in; echo vol-out > /data/out; (echo x > /mnt/ro/f) 2>/dev/null || echo ro-refused'
  KILN_CACHE="$out/cache" sb image "$out/busybox.tar"
  KILN_CACHE="$out/cache" sb image2 -e GREETING=flag "$out/busybox.tar" -- sh -c \
    'echo changed > /etc/hostname; cat /etc/hostname; echo $GREETING; pwd'
  warm
  named
  net
  hostile
  # SIGTERM to kiln reaches the workload, whose trap decides the status. (timeout passes the
  # SIGTERM it gets on to kiln.)
  cp "$out/rootfs.ext4" "$out/sigterm.ext4"
  timeout -k 5 600 build/kiln sandbox run --console-log "$out/sigterm.console" \
    "$out/sigterm.ext4" -- sh -c 'trap "echo got-term; exit 7" TERM; echo waiting
                                 while :; do sleep 1; done' \
    < /dev/null > "$out/sigterm.out" 2> "$out/sigterm.err" &
  local pid=$! i
  for i in $(seq 1500); do grep -q waiting "$out/sigterm.out" && break; sleep 0.2; done
  kill -TERM "$pid"
  wait "$pid"
  echo $? > "$out/sigterm.rc"
  rm -f "$out/sigterm.ext4"
  echo "agent-e2e: sigterm: exit $(cat "$out/sigterm.rc")"
}

# Warm sandboxes (sandbox/warm.h): the first --warm run makes the pool's snapshot of a booted
# guest in a cache under /tmp (its sockets and mapped memory file cannot be on the nested VM's
# 9p share; the number of snapshots made goes to warm-cache.count), the next ones restore it: two clones at once (each its own clock,
# set from the host's, and its own random state: the host's entropy and a reseed, which the
# guest kernel's own reseeding from interrupt timings may also bring about), an image root
# with a volume (another shape: another snapshot), a disk root refused. Each run's host clock
# before and after: NAME.time.
warm() {
  local cache
  cache=$(mktemp -d /tmp/kiln-e2e-warm.XXXXXX)
  sbw() {  # NAME [sandbox options]
    local name=$1
    shift
    date +%s > "$out/$name.time"
    KILN_CACHE="$cache" timeout -k 5 600 build/kiln sandbox run --warm \
      --console-log "$out/$name.console" "$@" < /dev/null > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
    date +%s >> "$out/$name.time"
    echo "agent-e2e: $name: exit $(cat "$out/$name.rc")"
  }
  local clone='date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; cat /marker'
  sbw warm-make "$out/rootdir" -- sh -c 'echo made; echo warm-guest > /warm-written'
  sleep 3  # a restored guest whose clock were not set would be at least this far behind
  sbw warm-a "$out/rootdir" -- sh -c "$clone" &
  local a=$!
  sbw warm-b "$out/rootdir" -- sh -c "$clone"
  wait "$a"
  sbw warm-image -v "$out/vol:/data" "$out/busybox.tar" -- sh -c 'echo $GREETING; cat /data/in'
  sbw warm-disk "$out/rootfs.ext4" -- true
  find "$cache/warm" -mindepth 1 -maxdepth 1 -type d | wc -l > "$out/warm-cache.count"
  rm -rf "$cache"
}

check() {
  local pass=0 fail=0 cases=""
  ok() { echo "PASS $1"; pass=$((pass + 1)); cases+="<testcase classname=\"agent\" name=\"$1\"/>"; }
  bad() {
    echo "FAIL $1: $2"; fail=$((fail + 1))
    cases+="<testcase classname=\"agent\" name=\"$1\"><failure message=\"failed\"/></testcase>"
  }
  expect() {  # NAME RC STDOUT [STDERR]
    local name=$1 rc=$2 want_out=$3 want_err=${4:-}
    local got_rc got_out got_err
    got_rc=$(cat "$out/$name.rc" 2>/dev/null || echo none)
    got_out=$(cat "$out/$name.out" 2>/dev/null; echo x) got_out=${got_out%x}
    got_err=$(cat "$out/$name.err" 2>/dev/null; echo x) got_err=${got_err%x}
    if [ "$got_rc" != "$rc" ]; then bad "$name" "exit $got_rc, want $rc; stderr: $got_err"
    elif [ "$got_out" != "$want_out" ]; then bad "$name" "stdout '$got_out', want '$want_out'"
    elif [ "$got_err" != "$want_err" ]; then bad "$name" "stderr '$got_err', want '$want_err'"
    elif ! grep -Eq "kiln-agent: (workload done|the host stopped the sandbox, ending [0-9]+ processes), powering off" "$out/$name.console"; then
      bad "$name" "the agent did not power off (console: $out/$name.console)"
    else ok "$name"; fi
  }
  expect echo 0 $'hi\n'
  expect exit3 3 ''
  expect stderr 0 $'to-out\nmore-out\n' $'to-err\n'
  expect signal 137 ''
  expect envcwd 0 $'bar /tmp kiln\n'
  expect stdin 0 $'line one\nline two\nend\n'
  expect orphan 0 $'parent-done\n'
  expect sigterm 7 $'waiting\ngot-term\n'
  expect named 5 $'up in /srv/app\ngot-term\n'
  step_is() {  # STEP RC STDOUT-PATTERN [STDERR-PATTERN]: grep -E patterns
    local name=named-$1 got_rc got_out got_err
    got_rc=$(cat "$out/$name.rc" 2>/dev/null || echo none)
    got_out=$(cat "$out/$name.out" 2>/dev/null) got_err=$(cat "$out/$name.err" 2>/dev/null)
    if [ "$got_rc" != "$2" ]; then bad "$name" "exit $got_rc, want $2; stderr: $got_err"
    elif ! grep -Eq -- "$3" <<< "$got_out"; then bad "$name" "stdout '$got_out' does not match '$3'"
    elif [ -n "${4:-}" ] && ! grep -Eq -- "$4" <<< "$got_err"; then
      bad "$name" "stderr '$got_err' does not match '$4'"
    elif [ -z "${4:-}" ] && [ -n "$got_err" ]; then bad "$name" "stderr '$got_err', want none"
    else ok "$name"; fi
  }
  # Warm: the clones ran on restored guests (no boot: the agent's readiness line is the pool's
  # boot's, not theirs), each set up by configure; their clocks are the host's; their random
  # bytes differ.
  local n
  for n in warm-make warm-a warm-b warm-image; do
    if ! grep -q "kiln-agent: set up by the host's configure" "$out/$n.console" ||
       grep -q "kiln-agent: ready on vsock" "$out/$n.console"; then
      bad "$n-restored" "not a restored guest set up by configure ($out/$n.console)"
    else ok "$n-restored"; fi
  done
  expect warm-make 0 $'made\n'
  if [ "$(cat "$out/rootdir/warm-written" 2>/dev/null)" = warm-guest ]; then ok warm-make-write
  else bad warm-make-write "the warm guest's /warm-written is not on the host"; fi
  for n in warm-a warm-b; do
    local t0 t1 guest
    t0=$(head -1 "$out/$n.time") t1=$(tail -1 "$out/$n.time") guest=$(head -1 "$out/$n.out")
    if [ "$(cat "$out/$n.rc")" != 0 ] || [ "$(sed -n 3p "$out/$n.out")" != host-marker ]; then
      bad "$n" "exit $(cat "$out/$n.rc"), out $(cat "$out/$n.out"), err $(cat "$out/$n.err")"
    elif ! [ "$guest" -ge $((t0 - 1)) ] 2>/dev/null || ! [ "$guest" -le $((t1 + 1)) ]; then
      bad "$n-clock" "guest time $guest outside the host's $t0..$t1"
    else ok "$n"; ok "$n-clock"; fi
  done
  local ra rb
  ra=$(sed -n 2p "$out/warm-a.out") rb=$(sed -n 2p "$out/warm-b.out")
  if [ ${#ra} = 32 ] && [ "$ra" != "$rb" ]; then ok warm-entropy
  else bad warm-entropy "clones read '$ra' and '$rb' from /dev/urandom"; fi
  expect warm-image 0 $'from-image\nvol-in\n'
  local shapes
  shapes=$(cat "$out/warm-cache.count" 2>/dev/null)
  if [ "$shapes" = 2 ]; then ok warm-cache
  else bad warm-cache "want 2 warm snapshots (directory root; image root and a volume), got $shapes"; fi
  if [ "$(cat "$out/warm-disk.rc")" = 125 ] &&
     grep -q -- "--warm: a disk root .* is not restored on a warm sandbox yet" "$out/warm-disk.err"; then
    ok warm-disk
  else bad warm-disk "exit $(cat "$out/warm-disk.rc"): $(cat "$out/warm-disk.err")"; fi
  step_is ls 0 '^web +running +[0-9]+ .* sh -c'
  step_is exec 4 '^main 1 /srv/app$' '^exec-err$'
  step_is exec-w 126 '^$' "chdir '/nonexistent'"
  step_is exec-missing 127 '^$' "exec '/no/such/command'.*No such file"
  step_is dup 125 '^$' 'web: a sandbox of that name exists'
  step_is kill 0 '^$'
  step_is long 137 '^exec-long$' "the sandbox stopped before 'sh' exited"
  if grep -q "the host stopped the sandbox, ending 1 processes" "$out/named.console"; then
    ok named-ends-exec
  else bad named-ends-exec "the agent did not end the exec'd process ($out/named.console)"; fi
  step_is ls-all 0 '^web +exited \(5\) +- '
  step_is exec-after 125 '^$' 'web has exited \(status 5\)'
  step_is rm 0 '^web$'
  step_is ls-gone 0 '^$'
  expect rmflag 0 ''
  if [ -f "$out/net.skip" ]; then echo "SKIP net: $(cat "$out/net.skip")"
  else
    expect net 0 $'inet 10.77.0.2/24\n1400\ndefault via 10.77.0.1\nnameserver 10.77.0.1\nping-ok\n'
    expect net-warm 0 $'52:54:00:77:00:03\ninet 10.77.0.3/24\nping-ok\n'
  fi
  hostile_is() {  # MODE STDERR-PATTERN
    local name=hostile-$1 got_rc got_err
    got_rc=$(cat "$out/$name.rc" 2>/dev/null || echo none) got_err=$(cat "$out/$name.err" 2>/dev/null)
    if [ "$got_rc" != 125 ]; then bad "$name" "exit $got_rc, want 125; stderr: $got_err"
    elif ! grep -Eq -- "^kiln sandbox: $2" <<< "$got_err"; then
      bad "$name" "stderr '$got_err' does not match '$2'"
    elif ! grep -q "hostile-agent: mode '$1'" "$out/$name.console"; then
      bad "$name" "the hostile agent did not run in mode $1 ($out/$name.console)"
    else ok "$name"; fi
  }
  hostile_is garbage 'the agent broke the protocol: '
  hostile_is huge 'the agent broke the protocol: frame length 2147483648 is above the limit'
  hostile_is close 'the agent closed the connection'
  hostile_is silent 'the agent did not answer hello within'
  hostile_is bad-exit 'the agent broke the protocol: agent sent exit for process [0-9]+, which is not running'
  hostile_is stdin-data 'the agent broke the protocol: agent sent data on stdin'
  step_is ls-rm 0 '^$'
  if [ -s "$out/named-orphan.err" ]; then bad named-orphan "$(cat "$out/named-orphan.err")"
  else ok named-orphan; fi
  step_is ls-dead 0 '^victim +dead +- '
  step_is rm-dead 0 '^victim$'
  expect tty 0 $'tty\r\n24 80\r\n'
  expect dirroot 0 $'host-marker\n'
  if [ "$(cat "$out/rootdir/written" 2>/dev/null)" = from-guest ]; then ok dirroot-write
  else bad dirroot-write "the guest's /written is not on the host ($out/rootdir/written)"; fi
  expect user 0 $'1000\n1001\n1000 1001\n'
  expect volume 0 $'vol-in\nvolro-in\nro-refused\n'
  if [ "$(cat "$out/vol/out" 2>/dev/null)" = vol-out ] && [ ! -e "$out/volro/f" ]; then ok volume-host
  else bad volume-host "vol/out missing or volro/f written"; fi
  expect image 0 $'from-image /root\n'
  expect image2 0 $'changed\nflag\n/root\n'
  local entries
  entries=$(ls "$out/cache/images" 2>/dev/null | grep -c '^sha256-')
  if [ "$entries" = 1 ] && ! grep -qs changed "$out"/cache/images/sha256-*/rootfs/etc/hostname; then
    ok image-cache
  else bad image-cache "want one cache entry with its /etc/hostname unchanged (entries: $entries)"; fi
  local want got
  want=$(sha256sum < "$out/blob.bin") got=$(sha256sum < "$out/blob.out" 2>/dev/null)
  if [ "$(cat "$out/blob.rc" 2>/dev/null)" = 0 ] && [ "$want" = "$got" ]; then ok blob
  else bad blob "exit $(cat "$out/blob.rc" 2>/dev/null), sha256 $got, want $want"; fi
  # The agent's readiness line: its start-up time on the console.
  if grep -q "kiln-agent: ready on vsock port 1024" "$out/echo.console"; then ok ready
  else bad ready "no readiness line on the console"; fi
  grep -h "kiln-agent: ready" "$out"/*.console | head -3
  echo "<testsuites><testsuite name=\"agent\">$cases</testsuite></testsuites>" > "$out/junit.xml"
  echo "agent-e2e: $pass passed, $fail failed"
  [ $fail -eq 0 ]
}

case "${1:-all}" in
  prepare) prepare ;;
  boots) boots ;;
  check) check ;;
  all)
    prepare || exit 1
    if [ "$(kvm_host_kind)" = hardware ]; then boots
    else scripts/nested-kvm/run-in-vm.sh --rw "$repo" tests/linux/agent-e2e.sh boots; fi
    check ;;
  *) echo "usage: $0 [prepare|boots|check]" >&2; exit 2 ;;
esac
