#!/usr/bin/env bash
# kiln-oci driven by an engine nobody here wrote: Podman (with conmon) runs containers with
# `--runtime build/kiln-oci`, each in a Kiln microVM booted with the kit's kernel and the agent;
# and kiln-oci's own verbs on a hand-made bundle (create, state, start, kill, delete, list, a
# bad config.json refused). Cases: exit statuses 0, 3 and 137; stdout and stderr apart; -i
# stdin; -e, -w, -u; -v read-write and :ro; the engine's /etc/hostname and
# /etc/hosts (file binds); -t (conmon's console socket: a pty in the guest); --memory (the guest's RAM); the runtime's state through a
# container's life.
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
  pstep pps ps --format '{{.Names}} {{.Status}}'
  pstep pstop stop -t 5 kbox
  pstep plogs logs kbox
  pstep prm rm kbox
  echo "oci-e2e: detached container done"

  # The runtime's verbs on the hand-made bundle.
  local oci=("$repo/build/kiln-oci" --root "$tmp/oci") id=kiln-e2e-1
  step() {  # NAME CMD...
    local name=$1
    shift
    timeout -k 5 120 "$@" < /dev/null > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
  }
  # create's stdio is the container's: the workload's output lands in bundle-workload.out.
  timeout -k 5 120 "${oci[@]}" create --bundle "$out/bundle" --pid-file "$out/bundle.pid" "$id" \
    < /dev/null > "$out/bundle-workload.out" 2> "$out/create.err"
  echo $? > "$out/create.rc"
  : > "$out/create.out"
  step state-created "${oci[@]}" state "$id"
  step start "${oci[@]}" start "$id"
  for v in $(seq 300); do grep -q started "$out/bundle-workload.out" && break; sleep 0.2; done
  step state-running "${oci[@]}" state "$id"
  step list "${oci[@]}" list
  step exec-cli "${oci[@]}" exec "$id" sh -c 'echo "in-exec $(hostname)"; exit 6'
  echo '{"args": ["sh", "-c", "echo from-json; echo json-err >&2"], "cwd": "/", "env": ["PATH=/bin"]}' \
    > "$out/process.json"
  step exec-json "${oci[@]}" exec --process "$out/process.json" --detach \
    --pid-file "$out/exec.pid" "$id"
  for v in $(seq 300); do kill -0 "$(cat "$out/exec.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  step delete-running "${oci[@]}" delete "$id"
  step kill "${oci[@]}" kill "$id" TERM
  for v in $(seq 300); do kill -0 "$(cat "$out/bundle.pid")" 2>/dev/null || break; sleep 0.2; done
  step state-stopped "${oci[@]}" state "$id"
  step delete "${oci[@]}" delete "$id"
  step state-gone "${oci[@]}" state "$id"
  step bad "${oci[@]}" create --bundle "$out/badbundle" bad-1
  step bad-list "${oci[@]}" list -q
  step features "${oci[@]}" features
  step version "${oci[@]}" --version

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
  local kb
  kb=$(cat "$out/memory.out" 2>/dev/null)
  # 256 MiB and kiln-oci's 64 MiB overhead, less what the kernel keeps.
  if [ "$(cat "$out/memory.rc" 2>/dev/null)" = 0 ] && [ "${kb:-0}" -gt 250000 ] &&
    [ "${kb:-0}" -lt 330000 ]; then ok memory
  else bad memory "MemTotal ${kb:-none} kB, want 250000-330000 (exit $(cat "$out/memory.rc" 2>/dev/null))"; fi

  match create 0 '^$'
  match state-created 0 '"status": "created"'
  match start 0 '^$'
  match state-running 0 '"annotations": \{[^}]*"org.example.test": "yes".*"status": "running"'
  if [ -n "$(cat "$out/bundle.pid" 2>/dev/null)" ] &&
    grep -q "\"pid\": $(cat "$out/bundle.pid")," "$out/state-running.out"; then ok pid-file
  else bad pid-file "the pid file and state's pid differ"; fi
  match list 0 'kiln-e2e-1 +[0-9]+ +running'
  expect exec-cli 6 $'in-exec bundled\n'
  expect exec-json 0 $'from-json\n' $'json-err\n'
  if [ -n "$(cat "$out/exec.pid" 2>/dev/null)" ]; then ok exec-pid-file
  else bad exec-pid-file "exec --detach wrote no pid file"; fi
  match detach 0 '^[0-9a-f]{64}'
  expect pexec 5 $'exec-hi kbox\n'
  match pps 0 'kbox Up'
  match pstop 0 'kbox'
  expect plogs 0 $'daemon-up\n'
  match prm 0 'kbox'
  match delete-running 1 '^$' 'is running'
  match kill 0 '^$'
  if [ "$(cat "$out/bundle-workload.out")" = $'started\ngot-term' ]; then ok bundle-workload
  else bad bundle-workload "the workload printed '$(cat "$out/bundle-workload.out")'"; fi
  match state-stopped 0 '"status": "stopped"'
  match delete 0 '^$'
  match state-gone 1 '^$' 'kiln-e2e-1 does not exist'
  match bad 2 '^$' 'config.json: process.cwd: must be an absolute path'
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
