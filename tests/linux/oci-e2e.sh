#!/usr/bin/env bash
# kiln-oci driven by an engine nobody here wrote: Podman (with conmon) runs containers with
# `--runtime build/kiln-oci`, each in a Kiln microVM booted with the kit's kernel and the agent;
# and kiln-oci's own verbs on a hand-made bundle (create, state, start, kill, delete, list, a bad
# config.json refused). Cases: exit statuses 0, 3 and 137; stdout and stderr apart; -i stdin; -e,
# -w, -u; -v read-write and :ro; the engine's /etc/hostname and /etc/hosts (file binds); -t
# (conmon's console socket: a pty in the guest); --memory (the guest's RAM); Kiln's annotations
# (vCPUs, memory); --read-only and --tmpfs; a detached container's logs, exec, exec -it, ps, pause
# and unpause, cp both ways, stop, start again, kill -s USR1 and wait; containerd's ctr; Docker's
# API as Podman serves it; the runtime's state through a container's life (paused too).
#
#   tests/linux/oci-e2e.sh          prepare, boots (here on VMX/SVM KVM, else in the nested-KVM
#                                   VM), check
#   tests/linux/oci-e2e.sh prepare  the bundle's root and the volumes (on the host)
#   tests/linux/oci-e2e.sh boots    the runs, here (as root: Podman's state under /tmp)
#   tests/linux/oci-e2e.sh check    the outputs; writes build/oci-test/junit.xml
# Outputs stay in build/oci-test/ (NAME.out, NAME.err, NAME.rc).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build/oci-test"
cd "$repo"
# shellcheck source=../../scripts/lib/kvm-host.sh
. "$repo/scripts/lib/kvm-host.sh"

prepare() {
  rm -rf "$out" && mkdir -p "$out/vol" "$out/volro"
  scripts/build-rootfs.sh --dir "$out/rootdir" >/dev/null || return 1
  tar -C "$out/rootdir" -cf "$out/rootdir.tar" . || return 1
  echo vol-in > "$out/vol/in"
  echo volro-in > "$out/volro/in"
  # A bundle for the runtime's own verbs: the same root, a process that waits for a signal.
  mkdir -p "$out/bundle"
  cp -a "$out/rootdir" "$out/bundle/rootfs"
  cat > "$out/bundle/config.json" <<'JSON'
{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "hostname": "bundled",
 "process": {"args": ["sh", "-c", "echo started; trap 'echo got-term; exit 9' TERM; while :; do sleep 1; done"],
             "env": ["PATH=/bin:/sbin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
 "annotations": {"org.example.test": "yes"}}
JSON
  mkdir -p "$out/badbundle/rootfs"
  echo '{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "relative"}}' \
    > "$out/badbundle/config.json"
}

boots() {
  # Podman's scratch state, the cgroup2 mount and the runtime's /run state need root (always so
  # in the nested VM); elsewhere the suite is skipped, saying so.
  if [ "$(id -u)" != 0 ]; then
    echo "needs root (Podman's scratch state and a cgroup2 mount)" > "$out/skip"
    return 0
  fi
  local tmp pod
  tmp=$(mktemp -d /tmp/kiln-oci-e2e.XXXXXX)
  # The engine's network (netavark: bridge, veth, iptables' NAT) and kiln-oci's redirect (tc
  # ingress, u32, mirred), loaded where they are modules nothing loaded yet (the nested VM's
  # initramfs loads only its own few); lo up for the requests to 127.0.0.1.
  local m
  for m in bridge veth br_netfilter nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack \
    xt_nat xt_MASQUERADE xt_conntrack xt_comment xt_addrtype xt_mark xt_multiport xt_tcpudp \
    sch_ingress cls_u32 act_mirred; do
    modprobe -q "$m" 2>/dev/null
  done
  ip link set lo up
  # Podman as ../shared/docs/engines-here.md has it in the nested VM: cgroup2 where nothing is
  # mounted, its state under $tmp, no network (netavark's bridge needs modules the VM lacks).
  local cg=0
  if ! mountpoint -q /sys/fs/cgroup; then mount -t cgroup2 none /sys/fs/cgroup && cg=1; fi
  mkdir -p "$tmp/pnet" "$tmp/ptmp"
  cat > "$tmp/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$tmp/ptmp"
[network]
network_backend = "netavark"
network_config_dir = "$tmp/pnet"
CONF
  export CONTAINERS_CONF="$tmp/containers.conf" TMPDIR="$tmp"
  pod=(podman --root "$tmp/pr" --runroot "$tmp/prr" --storage-driver vfs)
  "${pod[@]}" import -q "$out/rootdir.tar" localhost/kiln-oci-test >/dev/null ||
    echo "oci-e2e: podman import failed" >&2
  run() {  # NAME [podman run options] -- CMD...; stdin from $in (default /dev/null)
    local name=$1 start
    shift
    start=$(date +%s)
    timeout -k 5 300 "${pod[@]}" --runtime "$repo/build/kiln-oci" run --rm --network none "$@" \
      < "${in:-/dev/null}" > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
    echo "oci-e2e: $name: exit $(cat "$out/$name.rc") after $(($(date +%s) - start)) s"
    [ $(($(date +%s) - start)) -ge 300 ] && hung "$name"
  }
  hung() {  # what was left when a run timed out: the processes, the guests' consoles
    echo "oci-e2e: $1 timed out; processes:"; ps -eo pid,ppid,stat,args | grep -v ' \[' | cut -c1-200
    find "$tmp" /run -name console.log 2>/dev/null | while read -r f; do echo "== $f"; tail -n 30 "$f"; done
  }
  local img=localhost/kiln-oci-test
  run echo "$img" echo hi
  run exit3 "$img" sh -c 'echo out; echo err >&2; exit 3'
  run signal "$img" sh -c 'kill -9 $$'
  run envcwd -e FOO=bar -w /etc -u 1000:1001 "$img" sh -c \
    'echo "$FOO $(pwd) $(id -u) $(id -g)"'
  printf 'line one\nline two\n' > "$out/stdin.in"
  in="$out/stdin.in" run stdin -i "$img" cat
  run volume -v "$out/vol:/data" -v "$out/volro:/mnt/ro:ro" "$img" sh -c \
    'cat /data/in /mnt/ro/in; echo vol-out > /data/out; (echo x > /mnt/ro/f) 2>/dev/null || echo ro-refused'
  run files --hostname kiln-box "$img" sh -c 'hostname; echo "$(cat /etc/hostname)"; grep -q localhost /etc/hosts && echo hosts-ok'
  run tty -t "$img" sh -c 'test -t 0 && test -t 1 && echo tty; stty size'
  run memory --memory 256m "$img" sh -c "awk '/MemTotal/ {print \$2}' /proc/meminfo"
  # Kiln's annotations size the microVM: 2 vCPUs, 192 MiB.
  run annotations --annotation io.kiln.vcpus=2 --annotation io.kiln.memory_mib=192 "$img" sh -c \
    "grep -c ^processor /proc/cpuinfo; awk '/MemTotal/ {print \$2}' /proc/meminfo"
  # --read-only: the root is read-only, podman's tmpfs on /tmp, /var/tmp (missing in the image:
  # kiln-oci makes the mount point) and /run are not.
  run readonly --read-only "$img" sh -c \
    'touch /x 2>/dev/null || echo ro-root; touch /tmp/a /var/tmp/b /run/c && echo tmp-ok'
  # --tmpfs with options, and one over /etc: the image's files copied up (podman's default
  # tmpcopyup), the engine's /etc/hosts bound on top of it.
  run tmpfs --tmpfs /scratch:size=1m,mode=700 --tmpfs /etc "$img" sh -c \
    'grep -o " /scratch tmpfs [^ ]*" /proc/mounts; stat -c %a /scratch; grep -c " /etc tmpfs" /proc/mounts
     grep -q "^root:" /etc/passwd && echo copied; grep -q localhost /etc/hosts && echo hosts-ok'

  # Warm containers: kiln-oci's runtime config says warm = true (its name and the cache reach
  # kiln-oci through conmon's environment, in a second containers.conf); the first container
  # makes the pool's snapshot, the second restores it. Their io.kiln.timings lines say whether
  # they were warm; the engine's hostname and /etc/hosts (a bind of its file) are set up by the
  # restored agent.
  printf 'warm = true\ntimings_annotation = true\n' > "$tmp/warm-oci.toml"
  sed -e "/^\[engine\]/a conmon_env_vars = [\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\", \"KILN_OCI_CONFIG=$tmp/warm-oci.toml\", \"KILN_CACHE=$tmp/kcache\"]" \
    "$tmp/containers.conf" > "$tmp/containers-warm.conf"
  for v in warm1 warm2; do
    CONTAINERS_CONF="$tmp/containers-warm.conf" run "$v" --hostname "kiln-$v" \
      --annotation io.kiln.timings="$tmp/warm-timings" "$img" sh -c \
      'echo "warm $(hostname)"; grep -q localhost /etc/hosts && echo hosts-ok'
  done
  cp "$tmp/warm-timings" "$out/warm-timings.jsonl" 2>/dev/null
  find "$tmp/kcache/warm" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l > "$out/warm-cache.count"

  # A detached container: logs, exec (conmon's exec --process --detach), ps, stop, rm.
  local prt=("${pod[@]}" --runtime "$repo/build/kiln-oci") v
  pstep() {  # NAME podman-args...
    local name=$1
    shift
    timeout -k 5 180 "${prt[@]}" "$@" < /dev/null > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
  }
  pstep detach run -d --name kbox --hostname kbox --network none "$img" sh -c \
    'echo daemon-up; while :; do sleep 1; done'
  for v in $(seq 300); do "${prt[@]}" logs kbox 2>/dev/null | grep -q daemon-up && break; sleep 0.2; done
  pstep pexec exec kbox sh -c 'echo "exec-hi $(cat /etc/hostname)"; exit 5'
  pstep pexectty exec -it kbox sh -c 'test -t 0 && test -t 1 && echo exec-tty'
  pstep pps ps --format '{{.Names}} {{.Status}}'
  pstep ppause pause kbox
  pstep pstatus-paused inspect --format '{{.State.Status}}' kbox
  pstep punpause unpause kbox
  pstep pstatus-running inspect --format '{{.State.Status}}' kbox
  # cp both ways through the container's root (the share the guest sees).
  echo cp-in > "$out/cp.in"
  pstep pcpin cp "$out/cp.in" kbox:/cp-in
  pstep pcpseen exec kbox sh -c 'cat /cp-in; echo cp-out > /cp-out'
  pstep pcpout cp kbox:/cp-out "$out/cp.got"
  pstep pstop stop -t 5 kbox
  # Started again: a fresh microVM from the same bundle; then a signal the workload does not
  # catch ends it with 128+10.
  pstep pstart start kbox
  for v in $(seq 300); do [ "$("${prt[@]}" logs kbox 2>/dev/null | grep -c daemon-up)" = 2 ] && break; sleep 0.2; done
  pstep pkill kill -s USR1 kbox
  pstep pwait wait kbox
  pstep plogs logs kbox
  pstep prm rm kbox
  echo "oci-e2e: detached container done"

  # The engine's network: -p with a request from the host answered by httpd in the guest,
  # `port`, and the guest's NIC with the MAC, address, gateway and MTU Podman gave the
  # container; then the same warm (the runtime config above): the snapshot's NIC restored on
  # this container's TAP, with Podman's MAC set by the agent.
  web() {  # NAME CONTAINER HOST_PORT (CONTAINERS_CONF from the caller)
    local name=$1 box=$2 port=$3 v
    pstep "$name" run -d --name "$box" -p "$port:80" "$img" sh -c \
      "echo $name-page > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
    pstep "${name}port" port "$box"
    for v in $(seq 100); do
      curl -sS -m 3 "http://127.0.0.1:$port/" > "$out/${name}get.out" 2> "$out/${name}get.err" && break
      sleep 0.3
    done
    echo $? > "$out/${name}get.rc"
    pstep "${name}nic" exec "$box" sh -c \
      'cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk "{print \$4}"
       ip route | awk "/^default/ {print \$3}"; cat /sys/class/net/eth0/mtu'
    pstep "${name}inspect" inspect "$box" --format \
      '{{.NetworkSettings.MacAddress}}
{{.NetworkSettings.IPAddress}}/{{.NetworkSettings.IPPrefixLen}}
{{.NetworkSettings.Gateway}}'
    pstep "${name}rm" rm -f -t 2 "$box"
  }
  web web kweb 18080
  CONTAINERS_CONF="$tmp/containers-warm.conf" web webwarm kwebw 18081
  echo "oci-e2e: network done"

  # The runtime's verbs on the hand-made bundle.
  local oci=("$repo/build/kiln-oci" --root "$tmp/oci") id=kiln-e2e-1
  step() {  # NAME CMD...
    local name=$1
    shift
    timeout -k 5 120 "$@" < /dev/null > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
  }
  # create's stdio is the container's: the workload's output lands in bundle-workload.out.
  # (--no-pivot: the host process's view of the root made with a move and chroot.)
  printf 'vcpus = 2\nmemory = 64\n' > "$out/bad-oci.toml"
  timeout -k 5 120 "${oci[@]}" create --no-pivot --bundle "$out/bundle" --pid-file "$out/bundle.pid" "$id" \
    < /dev/null > "$out/bundle-workload.out" 2> "$out/create.err"
  echo $? > "$out/create.rc"
  : > "$out/create.out"
  step state-created "${oci[@]}" state "$id"
  # The container's host process sees the container's root as "/" (what an engine joining its
  # mount namespace gets), here in a listing of its /proc/PID/root.
  step view ls "/proc/$(cat "$out/bundle.pid" 2>/dev/null)/root/"
  step start "${oci[@]}" start "$id"
  for v in $(seq 300); do grep -q started "$out/bundle-workload.out" && break; sleep 0.2; done
  step state-running "${oci[@]}" state "$id"
  step list "${oci[@]}" list
  # ps: the host processes standing for the container (its host process first).
  step ps-json "${oci[@]}" ps --format json "$id"
  step ps-table "${oci[@]}" ps "$id"
  step ps-args "${oci[@]}" ps "$id" -o pid,comm
  step ps-json-args "${oci[@]}" ps --format json "$id" -o pid
  # Paused: the VMM's vCPUs stopped, and state asks the VMM.
  step pause "${oci[@]}" pause "$id"
  step state-paused "${oci[@]}" state "$id"
  step pause-again "${oci[@]}" pause "$id"
  step resume "${oci[@]}" resume "$id"
  step state-resumed "${oci[@]}" state "$id"
  step exec-cli "${oci[@]}" exec "$id" sh -c 'echo "in-exec $(hostname)"; exit 6'
  echo '{"args": ["sh", "-c", "echo from-json; echo json-err >&2"], "cwd": "/", "env": ["PATH=/bin"]}' \
    > "$out/process.json"
  step exec-json "${oci[@]}" exec --process "$out/process.json" --detach \
    --pid-file "$out/exec.pid" "$id"
  for v in $(seq 300); do kill -0 "$(cat "$out/exec.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  # update: the size the microVM has is accepted, another refused naming the field.
  step update-same sh -c "echo '{\"memory\": {\"limit\": null}}' | $(printf '%q ' "${oci[@]}") update --resources - $id"
  echo '{"memory": {"limit": 1073741824}}' > "$out/resources.json"
  step update-memory "${oci[@]}" update --resources "$out/resources.json" "$id"
  step delete-running "${oci[@]}" delete "$id"
  step kill "${oci[@]}" kill "$id" TERM
  for v in $(seq 300); do kill -0 "$(cat "$out/bundle.pid")" 2>/dev/null || break; sleep 0.2; done
  step state-stopped "${oci[@]}" state "$id"
  step delete "${oci[@]}" delete "$id"
  step state-gone "${oci[@]}" state "$id"
  # A bundle in a network namespace made here as an engine makes one: the guest has the
  # veth's address; the TAP and the redirect are there while the container lives; its host
  # process killed (no clean-up of its own), delete removes them.
  local ns=kiln-e2e-net nid=kiln-e2e-net
  # Two interfaces, the second named as no guest names its NICs (the agent renames by MAC).
  ip netns add "$ns" && ip link add kiln-e2e-peer type veth peer name eth0 netns "$ns" &&
    ip link add kiln-e2e-peer1 type veth peer name uplink1 netns "$ns" &&
    ip -n "$ns" link set uplink1 address 02:00:00:00:91:01 &&
    ip -n "$ns" addr add 10.91.0.2/24 dev eth0 && ip -n "$ns" link set eth0 up &&
    ip -n "$ns" addr add 10.92.0.2/24 dev uplink1 && ip -n "$ns" link set uplink1 up &&
    ip link set kiln-e2e-peer up && ip link set kiln-e2e-peer1 up ||
    echo "oci-e2e: could not make network namespace $ns" >&2
  mkdir -p "$out/netbundle"
  cat > "$out/netbundle/config.json" <<JSON
{"ociVersion": "1.0.2", "root": {"path": "$out/bundle/rootfs"},
 "process": {"args": ["sh", "-c", "for i in eth0 uplink1; do echo \$i \$(cat /sys/class/net/\$i/address) \$(ip -4 -o addr show \$i | awk '{print \$4}'); done; while :; do sleep 1; done"],
             "env": ["PATH=/bin:/sbin"], "cwd": "/"},
 "linux": {"namespaces": [{"type": "network", "path": "/run/netns/$ns"}]}}
JSON
  timeout -k 5 120 "${oci[@]}" create --bundle "$out/netbundle" --pid-file "$out/net.pid" "$nid" \
    < /dev/null > "$out/net-workload.out" 2> "$out/net-create.err"
  echo $? > "$out/net-create.rc"
  : > "$out/net-create.out"
  step net-tap ip -n "$ns" -o link show tap0_kiln
  step net-tap1 ip -n "$ns" -o link show tap1_kiln
  step net-start "${oci[@]}" start "$nid"
  for v in $(seq 300); do grep -q 10.92 "$out/net-workload.out" && break; sleep 0.2; done
  cp "$out/net-workload.out" "$out/net-guest.out"; echo 0 > "$out/net-guest.rc"
  kill -KILL "$(cat "$out/net.pid")"
  for v in $(seq 100); do kill -0 "$(cat "$out/net.pid")" 2>/dev/null || break; sleep 0.2; done
  step net-delete "${oci[@]}" delete "$nid"
  step net-tap-gone ip -n "$ns" -o link show tap0_kiln
  step net-tap1-gone ip -n "$ns" -o link show tap1_kiln
  step net-qdisc-gone tc -n "$ns" qdisc show dev eth0 ingress
  ip netns del "$ns"
  ip link del kiln-e2e-peer 2>/dev/null
  ip link del kiln-e2e-peer1 2>/dev/null
  step bad "${oci[@]}" create --bundle "$out/badbundle" bad-1
  # --log: the error also in the log file, as containerd (json) and Podman (text) read it.
  step log-json "${oci[@]}" --log "$out/oci-log.json" --log-format json create --bundle \
    "$out/badbundle" bad-3
  step log-json-file cat "$out/oci-log.json"
  step log-text "${oci[@]}" --log "$out/oci-log.txt" create --bundle "$out/badbundle" bad-4
  step log-text-file cat "$out/oci-log.txt"
  step bad-config env KILN_OCI_CONFIG="$out/bad-oci.toml" "${oci[@]}" create --bundle \
    "$out/bundle" bad-2
  step bad-list "${oci[@]}" list -q
  step features "${oci[@]}" features
  step version "${oci[@]}" --version

  # containerd's runc shim with kiln-oci as its runc binary (what a Kubernetes RuntimeClass
  # whose runc options set BinaryName does), the image from an OCI archive Podman wrote.
  local ctd="$tmp/ctd" ctd_pid
  mkdir -p "$ctd"
  cat > "$ctd/config.toml" <<CONF
version = 2
# No CRI (Kubernetes') plugin: ctr does not use it, and its streaming server wants 127.0.0.1,
# which the nested VM's kernel has no address for until something brings lo up.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "$ctd/root"
state = "$ctd/state"
[grpc]
  address = "$ctd/ctd.sock"
CONF
  containerd --config "$ctd/config.toml" > "$out/containerd.log" 2>&1 &
  ctd_pid=$!
  local ctr=(ctr -a "$ctd/ctd.sock") crun=(--snapshotter native --runc-binary "$repo/build/kiln-oci")
  for v in $(seq 100); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  "${pod[@]}" save -q --format oci-archive -o "$tmp/img.tar" "$img" &&
    "${ctr[@]}" images import --snapshotter native --base-name "$img" "$tmp/img.tar" >/dev/null ||
    echo "oci-e2e: the containerd image import failed" >&2
  step ctr-run "${ctr[@]}" run --rm "${crun[@]}" "$img:latest" kctr1 \
    sh -c 'echo ctr-out; echo ctr-err >&2; exit 4'
  step ctr-detach "${ctr[@]}" run -d "${crun[@]}" "$img:latest" kctr2 \
    sh -c 'while :; do sleep 1; done'
  step ctr-exec "${ctr[@]}" task exec --exec-id e1 kctr2 sh -c 'echo "ctr-exec $(hostname)"; exit 6'
  step ctr-ps "${ctr[@]}" task ls
  step ctr-top "${ctr[@]}" task ps kctr2
  step ctr-kill "${ctr[@]}" task kill -s KILL kctr2
  for v in $(seq 100); do "${ctr[@]}" task ls 2>/dev/null | grep -q 'kctr2.*STOPPED' && break; sleep 0.2; done
  step ctr-rm "${ctr[@]}" task rm kctr2
  "${ctr[@]}" containers rm kctr2 >/dev/null 2>&1
  kill "$ctd_pid" && wait "$ctd_pid"

  # Docker's HTTP API as Podman serves it, driven with curl, kiln-oci the service's runtime
  # (Podman 4.3's compat API ignores HostConfig.Runtime: the libpod inspect below shows which
  # runtime ran the container).
  "${prt[@]}" system service --time 0 "unix://$tmp/docker.sock" > "$out/service.log" 2>&1 &
  local svc=$! api="http://d/v1.41" dk=(curl -sS --unix-socket "$tmp/docker.sock")
  for v in $(seq 100); do "${dk[@]}" "$api/_ping" >/dev/null 2>&1 && break; sleep 0.2; done
  step api-create "${dk[@]}" -X POST -H 'Content-Type: application/json' \
    -d '{"Image": "'"$img"'", "Cmd": ["sh", "-c", "echo api-out; echo api-err >&2; exit 7"],
         "HostConfig": {"NetworkMode": "none"}}' \
    "$api/containers/create?name=kapi"
  step api-start "${dk[@]}" -X POST -w '%{http_code}' "$api/containers/kapi/start"
  step api-wait "${dk[@]}" -X POST "$api/containers/kapi/wait"
  step api-logs "${dk[@]}" "$api/containers/kapi/logs?stdout=1&stderr=1"
  step api-inspect "${dk[@]}" "$api/containers/kapi/json"
  step api-runtime "${dk[@]}" "http://d/v4.3.0/libpod/containers/kapi/json"  # names the runtime
  step api-rm "${dk[@]}" -X DELETE -w '%{http_code}' "$api/containers/kapi"
  kill "$svc" && wait "$svc"

  "${pod[@]}" rm -af >/dev/null 2>&1
  ((cg)) && umount /sys/fs/cgroup
  rm -rf "$tmp"
}

check() {
  local pass=0 fail=0 cases=""
  if [ -f "$out/skip" ]; then
    echo "SKIP oci-e2e: $(cat "$out/skip")"
    echo "<testsuites><testsuite name=\"oci\"><testcase classname=\"oci\" name=\"all\"><skipped/></testcase></testsuite></testsuites>" > "$out/junit.xml"
    return 0
  fi
  ok() { echo "PASS $1"; pass=$((pass + 1)); cases+="<testcase classname=\"oci\" name=\"$1\"/>"; }
  bad() {
    echo "FAIL $1: $2"; fail=$((fail + 1))
    cases+="<testcase classname=\"oci\" name=\"$1\"><failure message=\"failed\"/></testcase>"
  }
  expect() {  # NAME RC STDOUT [STDERR]: exact
    local name=$1 got_rc got_out got_err
    got_rc=$(cat "$out/$name.rc" 2>/dev/null || echo none)
    got_out=$(cat "$out/$name.out" 2>/dev/null; echo x) got_out=${got_out%x}
    got_err=$(cat "$out/$name.err" 2>/dev/null; echo x) got_err=${got_err%x}
    if [ "$got_rc" != "$2" ]; then bad "$name" "exit $got_rc, want $2; stderr: $got_err"
    elif [ "$got_out" != "$3" ]; then bad "$name" "stdout '$got_out', want '$3'"
    elif [ "$got_err" != "${4:-}" ]; then bad "$name" "stderr '$got_err', want '${4:-}'"
    else ok "$name"; fi
  }
  match() {  # NAME RC STDOUT-PATTERN [STDERR-PATTERN]: grep -E over the whole output
    local name=$1 got_rc got_out got_err
    got_rc=$(cat "$out/$name.rc" 2>/dev/null || echo none)
    got_out=$(cat "$out/$name.out" 2>/dev/null) got_err=$(cat "$out/$name.err" 2>/dev/null)
    if [ "$got_rc" != "$2" ]; then bad "$name" "exit $got_rc, want $2; stderr: $got_err"
    elif [ "$3" = '^$' ] && [ -n "$got_out" ]; then bad "$name" "stdout '$got_out', want none"
    elif [ "$3" != '^$' ] && ! grep -Ezq -- "$3" <<< "$got_out"; then
      bad "$name" "stdout '$got_out' does not match '$3'"
    elif [ -n "${4:-}" ] && ! grep -Eq -- "$4" <<< "$got_err"; then
      bad "$name" "stderr '$got_err' does not match '$4'"
    else ok "$name"; fi
  }
  expect echo 0 $'hi\n'
  expect exit3 3 $'out\n' $'err\n'
  expect signal 137 ''
  expect envcwd 0 $'bar /etc 1000 1001\n'
  expect stdin 0 $'line one\nline two\n'
  expect volume 0 $'vol-in\nvolro-in\nro-refused\n'
  if [ "$(cat "$out/vol/out" 2>/dev/null)" = vol-out ] && [ ! -e "$out/volro/f" ]; then ok volume-host
  else bad volume-host "vol/out missing or volro/f written"; fi
  expect files 0 $'kiln-box\nkiln-box\nhosts-ok\n'
  expect tty 0 $'tty\r\n24 80\r\n'
  expect warm1 0 $'warm kiln-warm1\nhosts-ok\n'
  expect warm2 0 $'warm kiln-warm2\nhosts-ok\n'
  local warm_lines
  warm_lines=$(grep -c '"warm":true' "$out/warm-timings.jsonl" 2>/dev/null)
  if [ "$warm_lines" = 2 ] && [ "$(cat "$out/warm-cache.count")" = 1 ]; then ok warm-restored
  else bad warm-restored "want 2 warm starts from 1 snapshot: $warm_lines warm, $(cat "$out/warm-cache.count") snapshots"; fi
  expect readonly 0 $'ro-root\ntmp-ok\n'
  local cpus mem
  { read -r cpus; read -r mem; } < "$out/annotations.out" 2>/dev/null
  # 192 MiB is 196608 kB, less what the kernel keeps.
  if [ "$(cat "$out/annotations.rc" 2>/dev/null)" = 0 ] && [ "${cpus:-0}" = 2 ] &&
    [ "${mem:-0}" -gt 140000 ] && [ "${mem:-0}" -le 196608 ]; then ok annotations
  else bad annotations "cpus ${cpus:-none}, MemTotal ${mem:-none} kB, want 2 and 140000-196608"; fi
  match tmpfs 0 '^ /scratch tmpfs rw,[^ ]*size=1024k,mode=700.700.1.copied.hosts-ok.$'
  local kb
  kb=$(cat "$out/memory.out" 2>/dev/null)
  # 256 MiB and kiln-oci's 64 MiB overhead, less what the kernel keeps.
  if [ "$(cat "$out/memory.rc" 2>/dev/null)" = 0 ] && [ "${kb:-0}" -gt 250000 ] &&
    [ "${kb:-0}" -lt 330000 ]; then ok memory
  else bad memory "MemTotal ${kb:-none} kB, want 250000-330000 (exit $(cat "$out/memory.rc" 2>/dev/null))"; fi

  expect ctr-run 4 $'ctr-out\n' $'ctr-err\n'
  match ctr-detach 0 '^$'
  match ctr-exec 6 '^ctr-exec [a-z0-9-]+.$'
  match ctr-ps 0 'kctr2 +[0-9]+ +RUNNING'
  match ctr-top 0 '^PID +INFO.[0-9]+ +-.[0-9]+ +-'
  match ctr-kill 0 '^$'
  match ctr-rm 0 '^$'
  match api-create 0 '"Id": *"[0-9a-f]{64}"'
  expect api-start 0 '204'
  match api-wait 0 '"StatusCode": *7'
  # The logs' multiplexed stream: an 8-byte header (stream 1 or 2) before each line.
  if grep -aq $'\x01\x00\x00\x00\x00\x00\x00\x08api-out' "$out/api-logs.out" &&
    grep -aq $'\x02\x00\x00\x00\x00\x00\x00\x08api-err' "$out/api-logs.out"; then ok api-logs
  else bad api-logs "stdout and stderr not in the log stream: $(od -c "$out/api-logs.out" | head -5)"; fi
  match api-inspect 0 '"State": *\{[^}]*"ExitCode": *7'
  match api-runtime 0 '"OCIRuntime": *"[^"]*kiln-oci"'
  expect api-rm 0 '204'
  match web 0 '^[0-9a-f]{64}.$'
  expect webport 0 $'80/tcp -> 0.0.0.0:18080\n'
  expect webget 0 $'web-page\n'
  match webinspect 0 '^([0-9a-f]{2}:){5}[0-9a-f]{2}.[0-9.]+/[0-9]+.[0-9.]+.$'
  expect webnic 0 "$(cat "$out/webinspect.out" 2>/dev/null)"$'\n1500\n'
  expect webwarmport 0 $'80/tcp -> 0.0.0.0:18081\n'
  expect webwarmget 0 $'webwarm-page\n'
  match webwarminspect 0 '^([0-9a-f]{2}:){5}[0-9a-f]{2}.[0-9.]+/[0-9]+.[0-9.]+.$'
  expect webwarmnic 0 "$(cat "$out/webwarminspect.out" 2>/dev/null)"$'\n1500\n'
  match webrm 0 'kweb'
  match create 0 '^$'
  match state-created 0 '"status": "created"'
  expect view 0 "$(ls "$out/bundle/rootfs/")"$'\n'
  match start 0 '^$'
  local hp
  hp=$(cat "$out/bundle.pid" 2>/dev/null || echo none)
  match ps-json 0 "^\\[$hp(,[0-9]+)+\\].\$"
  match ps-table 0 "^UID +PID +PPID .*.[a-z0-9]+ +$hp +[0-9]+ .*kiln"
  match ps-args 0 "^ *PID COMMAND.* *$hp kiln"
  match update-same 0 '^$'
  match update-memory 2 '^$' 'linux.resources.memory.limit: a running microVM.s memory cannot change \(it has 256 MiB'
  match ps-json-args 2 '^$' 'ps options \(-o\.\.\.\) are for --format table'
  match net-create 0 '^$'
  match net-tap 0 'tap0_kiln.*state UP'
  match net-tap1 0 'tap1_kiln.*state UP'
  match net-start 0 '^$'
  match net-guest 0 '^eth0 ([0-9a-f]{2}:){5}[0-9a-f]{2} 10.91.0.2/24.uplink1 02:00:00:00:91:01 10.92.0.2/24.$'
  match net-delete 0 '^$'
  match net-tap-gone 1 '^$' 'does not exist'
  match net-tap1-gone 1 '^$' 'does not exist'
  match net-qdisc-gone 0 '^$'
  match state-running 0 '"annotations": \{[^}]*"org.example.test": "yes".*"status": "running"'
  if [ -n "$(cat "$out/bundle.pid" 2>/dev/null)" ] &&
    grep -q "\"pid\": $(cat "$out/bundle.pid")," "$out/state-running.out"; then ok pid-file
  else bad pid-file "the pid file and state's pid differ"; fi
  match list 0 'kiln-e2e-1 +[0-9]+ +running'
  match pause 0 '^$'
  match state-paused 0 '"status": "paused"'
  match pause-again 1 '^$' 'is paused, not running'
  match resume 0 '^$'
  match state-resumed 0 '"status": "running"'
  expect exec-cli 6 $'in-exec bundled\n'
  expect exec-json 0 $'from-json\n' $'json-err\n'
  if [ -n "$(cat "$out/exec.pid" 2>/dev/null)" ]; then ok exec-pid-file
  else bad exec-pid-file "exec --detach wrote no pid file"; fi
  match detach 0 '^[0-9a-f]{64}'
  expect pexec 5 $'exec-hi kbox\n'
  expect pexectty 0 $'exec-tty\r\n'
  match pps 0 'kbox Up'
  match ppause 0 'kbox'
  expect pstatus-paused 0 $'paused\n'
  match punpause 0 'kbox'
  expect pstatus-running 0 $'running\n'
  match pcpin 0 '^$'
  expect pcpseen 0 $'cp-in\n'
  match pcpout 0 '^$'
  if [ "$(cat "$out/cp.got" 2>/dev/null)" = cp-out ]; then ok cp-out-file
  else bad cp-out-file "podman cp kbox:/cp-out gave '$(cat "$out/cp.got" 2>/dev/null)'"; fi
  match pstop 0 'kbox'
  match pstart 0 'kbox'
  match pkill 0 'kbox'
  expect pwait 0 $'138\n'
  expect plogs 0 $'daemon-up\ndaemon-up\n'
  match prm 0 'kbox'
  match delete-running 1 '^$' 'is running'
  match kill 0 '^$'
  if [ "$(cat "$out/bundle-workload.out")" = $'started\ngot-term' ]; then ok bundle-workload
  else bad bundle-workload "the workload printed '$(cat "$out/bundle-workload.out")'"; fi
  match state-stopped 0 '"status": "stopped"'
  match delete 0 '^$'
  match state-gone 1 '^$' 'kiln-e2e-1 does not exist'
  match bad 2 '^$' 'config.json: process.cwd: must be an absolute path'
  match log-json 2 '^$' 'kiln-oci: error: config.json: process.cwd'
  match log-json-file 0 '^\{"level":"error","msg":"config.json: process.cwd: must be an absolute path[^"]*","time":"20[0-9-]+T[0-9:.]+Z"\}.$'
  match log-text 2 '^$' 'kiln-oci: error: config.json: process.cwd'
  match log-text-file 0 '^time="20[0-9-]+T[0-9:.]+Z" level=error msg="config.json: process.cwd: must be an absolute path[^"]*".$'
  match bad-config 2 '^$' 'bad-oci.toml:2: memory: unknown key'
  match bad-list 0 '^$'
  match features 0 '"ociVersionMax"'
  match version 0 '^kiln-oci version [0-9.]+.commit: kiln [0-9.]+.spec: 1\.0\.2.$'
  echo "<testsuites><testsuite name=\"oci\">$cases</testsuite></testsuites>" > "$out/junit.xml"
  echo "oci-e2e: $pass passed, $fail failed"
  [ $fail -eq 0 ]
}

case "${1:-all}" in
  prepare) prepare ;;
  boots) boots ;;
  check) check ;;
  all)
    prepare || exit 1
    if [ "$(kvm_host_kind)" = hardware ]; then boots
    else scripts/nested-kvm/run-in-vm.sh --rw "$repo" tests/linux/oci-e2e.sh boots; fi
    check ;;
  *) echo "usage: $0 [prepare|boots|check]" >&2; exit 2 ;;
esac
