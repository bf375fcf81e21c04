#!/usr/bin/env bash
# Runs every test and ends with one line "N passed, N failed, N skipped" counting test cases:
#  - the unit, guest-image, fuzz and end-to-end suites on build/;
#  - the unit and end-to-end suites on an ASan+UBSan build (build-asan/);
#  - the Linux end-to-end test (tests/linux/linux-e2e.sh): the kit's kernel and Debian's,
#    virtio-fs; the guest agent booted by `kiln sandbox run` (tests/linux/agent-e2e.sh); and
#    kiln-oci under Podman and on its own (tests/linux/oci-e2e.sh).
# Where guests cannot run here (no /dev/kvm, or a PVM /dev/kvm: scripts/lib/kvm-host.sh), the
# guest-running cases skip on the host and run in QEMU TCG VMs with nested KVM
# (scripts/nested-kvm/) instead, in parallel with the host's work:
#   VM 1 (starts at once):        the whole end-to-end suite of build/, then the Linux, agent and
#                                 kiln-oci boots;
#   host:                         build/'s suites, then the ASan build and its suites;
#   VM 2 (once build-asan/ is built): the ASan end-to-end cases with a guest that drive devices
#                                 and the API (KILN_ASAN_NESTED_FILTER, of the cases that skipped
#                                 on the host: scripts/skipped_tests.py); the boot-variant cases
#                                 that exercise the loader and arch code run under ASan on real
#                                 KVM hosts, in the plain suite, and as unit tests under ASan.
# Each emulated machine uses one host core. KILN_SKIP_ASAN=1 skips the ASan build;
# KILN_SKIP_NESTED=1 skips the nested VMs; KILN_SKIP_LINUX=1 skips the Linux test.
# Prints where the time went at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
. scripts/lib/kvm-host.sh
t0=$(date +%s)
declare -A took
mark() { took[$1]=$(($(date +%s) - $2)); }
logs=(build/meson-logs/testlog.junit.xml)
status=0
asan=0
[ "${KILN_SKIP_ASAN:-0}" != 1 ] && asan=1
linux=0
[ "${KILN_SKIP_LINUX:-0}" != 1 ] && linux=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
host=$(kvm_host_kind)
nested=0
if [ "$host" != hardware ] && [ "${KILN_SKIP_NESTED:-0}" != 1 ]; then nested=1; fi
# The Linux boots run here only on VMX/SVM KVM, otherwise in nested VM 1: with the nested VMs
# skipped on another host there is nowhere to boot them.
if [ $linux = 1 ] && [ "$host" != hardware ] && [ $nested = 0 ]; then
  echo "test: KILN_SKIP_NESTED=1 on a $host host: the Linux test is skipped too"
  linux=0
fi
echo "test: /dev/kvm here: $host ($([ $nested = 1 ] && echo "guest suites in the nested-KVM VM" || echo "guest suites run here"))"
asan_pattern=${KILN_ASAN_NESTED_FILTER:-'Virtio*:Vsock*:VmmLifecycle.*:ApiTest.*:ApiInput.*:GuestSerial.*:GuestConsole.*:AcpiGuest.*:FirecrackerApi*:Snapshot*'}

out="$repo/build/nested-kvm/results"
rm -rf "$out" && mkdir -p "$out"
export NESTED_KVM_SMP=${NESTED_KVM_SMP:-1}

# Runs SCRIPT in a nested VM (bounded; a VM that died without the command's status, 125, is
# tried once more). Output to $out/NAME.log.
nested_run() {  # NAME SCRIPT
  local name=$1 script=$2 rc attempt
  for attempt in 1 2; do
    NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-1500} \
      scripts/nested-kvm/run-in-vm.sh --rw "$repo" sh -c "$script" > "$out/$name.log" 2>&1
    rc=$?
    [ $rc -eq 125 ] && [ $attempt -eq 1 ] && { echo "test: nested VM $name failed; once more"; continue; }
    return $rc
  done
}
e2e_cmd() {  # BUILD XML [FILTER]: the e2e suite as the nested VM runs it
  # kiln is copied into the VM's tmpfs first: the repository is a 9p share without a page
  # cache there, and each test's start of a 200 MB ASan binary paged over it took longer
  # than the tests wait for its API socket (the machine's root, with the libraries, is cached).
  local cmd="cp $repo/$1/kiln /tmp/kiln-$1 && env KILN_BIN=/tmp/kiln-$1 KILN_GUEST_DIR=$repo/build/tests/guests"
  cmd+=" KILN_OPENAPI=$repo/api/openapi.json ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS"
  cmd+=" $repo/$1/tests/e2e_tests --gtest_output=xml:$out/$2"
  [ -n "${3:-}" ] && cmd+=" --gtest_filter='$3'"
  echo "$cmd"
}

if [ $linux = 1 ]; then
  s=$(date +%s)
  tests/linux/linux-e2e.sh prepare || status=1
  tests/linux/agent-e2e.sh prepare || status=1
  tests/linux/oci-e2e.sh prepare || status=1
  mark linux-prepare "$s"
fi

vm1_pid=""
if [ $nested = 1 ]; then
  script="rc=0; $(e2e_cmd build e2e-nested-build.xml) || rc=1"
  [ $linux = 1 ] && script+="; $repo/tests/linux/linux-e2e.sh boots || rc=1"
  [ $linux = 1 ] && script+="; $repo/tests/linux/agent-e2e.sh boots || rc=1"
  [ $linux = 1 ] && script+="; $repo/tests/linux/oci-e2e.sh boots || rc=1"
  script+='; exit $rc'
  s=$(date +%s)
  (nested_run vm1 "$script"; echo $? > "$out/vm1.rc"; echo $(($(date +%s) - s)) > "$out/vm1.time") &
  vm1_pid=$!
fi

s=$(date +%s)
meson test -C build --print-errorlogs || status=1
mark "build-suites" "$s"

vm2_pid=""
if [ $asan = 1 ]; then
  s=$(date +%s)
  # -O0 with line tables only (-g1): the ASan build was the test run's critical path (756 s of
  # 1104 s cold); -O0 compiles api/config_files.cc in 14 s instead of 37 s at -O1 (81 s at
  # -O2 -g), and the traces stay complete.
  [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false -Doptimization=0 -Ddebug=false -Dcpp_args=-g1 >/dev/null
  # Sanitizer builds have no benchmarks; the test guests (plain C, cheap) are built too: the
  # host-side e2e cases make bad images from them.
  meson compile -C build-asan >/dev/null || status=1
  mark asan-build "$s"
  if [ $nested = 1 ]; then
    # Only the cases that skipped on the host (they need a guest): the others run on the host
    # under ASan below.
    asan_filter=$(python3 scripts/skipped_tests.py build/meson-logs/testlog.junit.xml \
      "$asan_pattern") || status=1
    s2=$(date +%s)
    (nested_run vm2 "$(e2e_cmd build-asan e2e-nested-build-asan.xml "$asan_filter")"
     echo $? > "$out/vm2.rc"; echo $(($(date +%s) - s2)) > "$out/vm2.time") &
    vm2_pid=$!
  fi
  s=$(date +%s)
  meson test -C build-asan --print-errorlogs --no-rebuild --no-suite guests --no-suite fuzz ||
    status=1
  mark asan-suites "$s"
  logs+=(build-asan/meson-logs/testlog.junit.xml)
fi

for vm in vm1 vm2; do
  pid_var=${vm}_pid
  [ -n "${!pid_var}" ] || continue
  wait "${!pid_var}"
  rc=$(cat "$out/$vm.rc" 2>/dev/null || echo 1)
  took[nested-$vm]=$(cat "$out/$vm.time" 2>/dev/null || echo "?")
  if [ "$rc" != 0 ]; then
    status=1
    echo "test: nested $vm exited $rc; its output (last 40 lines of $out/$vm.log):"
    tail -n 40 "$out/$vm.log"
  fi
done
if [ $nested = 1 ]; then
  for x in e2e-nested-build.xml $([ $asan = 1 ] && echo e2e-nested-build-asan.xml); do
    if [ -f "$out/$x" ]; then logs+=("$out/$x"); else echo "test: no $x"; status=1; fi
  done
fi

if [ $linux = 1 ]; then
  s=$(date +%s)
  if [ $nested = 0 ]; then
    tests/linux/linux-e2e.sh boots || status=1
    tests/linux/agent-e2e.sh boots || status=1
    tests/linux/oci-e2e.sh boots || status=1
  fi
  tests/linux/linux-e2e.sh check || status=1
  tests/linux/agent-e2e.sh check || status=1
  tests/linux/oci-e2e.sh check || status=1
  mark linux-check "$s"
  logs+=(build/linux-test/junit.xml build/agent-test/junit.xml build/oci-test/junit.xml)
fi

echo "test: time (s): total $(($(date +%s) - t0));$(for k in "${!took[@]}"; do printf ' %s %s;' "$k" "${took[$k]}"; done)"
python3 scripts/count_tests.py "${logs[@]}" || status=1
exit $status
