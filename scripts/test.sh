#!/usr/bin/env bash
# Runs every test and ends with one line "N passed, N failed, N skipped" counting test cases:
#  1. the unit, guest and end-to-end suites on build/;
#  2. the unit and end-to-end suites on an ASan+UBSan build (build-asan/);
#  3. where /dev/kvm cannot be opened (guest-running tests skip in 1 and 2): both end-to-end
#     suites again inside a QEMU TCG VM with nested KVM (scripts/nested-kvm/), so they run.
#  4. the Linux end-to-end test (tests/linux/linux-e2e.sh): the kit's kernel and rootfs.
# KILN_SKIP_ASAN=1 skips the ASan build; KILN_SKIP_NESTED=1 skips 3; KILN_SKIP_LINUX=1 skips 4.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
logs=(build/meson-logs/testlog.junit.xml)
status=0
asan=0
[ "${KILN_SKIP_ASAN:-0}" != 1 ] && asan=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

meson test -C build --print-errorlogs || status=1

if [ $asan = 1 ]; then
  [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
  meson compile -C build-asan >/dev/null || status=1
  meson test -C build-asan --print-errorlogs --no-suite guests --no-suite fuzz || status=1
  logs+=(build-asan/meson-logs/testlog.junit.xml)
fi

kvm_usable() {
  [ -c /dev/kvm ] && python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null
}
if ! kvm_usable && [ "${KILN_SKIP_NESTED:-0}" != 1 ]; then
  echo "test: /dev/kvm is not usable here; running the end-to-end tests under nested KVM in QEMU"
  out="$repo/build/nested-kvm/results"
  suites=("build")
  [ $asan = 1 ] && suites+=("build-asan")
  script='rc=0'
  for b in "${suites[@]}"; do
    script+="; env KILN_BIN=$repo/$b/kiln KILN_GUEST_DIR=$repo/build/tests/guests"
    script+=" KILN_OPENAPI=$repo/api/openapi.json"
    script+=" ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS"
    script+=" $repo/$b/tests/e2e_tests --gtest_output=xml:$out/e2e-nested-$b.xml || rc=1"
  done
  script+='; exit $rc'
  # Both suites (plain and ASan, ~60 guest-running tests each) take 10-20 min in this emulated
  # machine on a loaded 2-core host: the bound is generous. With two emulated CPUs the whole
  # emulated machine was seen to hang under host load (both
  # CPUs in soft lockup, an IPI lost between TCG threads while one ran a nested guest); one
  # emulated CPU has not hung. The run is bounded all the same, and a run that ended without
  # the command's status (125) is tried once more.
  export NESTED_KVM_SMP=${NESTED_KVM_SMP:-1}
  for attempt in 1 2; do
    rm -rf "$out" && mkdir -p "$out"
    NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-1800} \
      scripts/nested-kvm/run-in-vm.sh --rw "$repo" sh -c "$script"
    rc=$?
    if [ $rc -eq 125 ] && [ $attempt -eq 1 ]; then
      echo "test: the nested VM failed; trying once more"
      continue
    fi
    [ $rc -eq 0 ] || status=1
    break
  done
  for b in "${suites[@]}"; do
    if [ -f "$out/e2e-nested-$b.xml" ]; then logs+=("$out/e2e-nested-$b.xml"); else status=1; fi
  done
fi

# The Linux end-to-end test: the kit's kernel and rootfs through build/kiln (one boot).
if [ "${KILN_SKIP_LINUX:-0}" != 1 ]; then
  tests/linux/linux-e2e.sh || status=1
  logs+=(build/linux-test/junit.xml)
fi

python3 scripts/count_tests.py "${logs[@]}" || status=1
exit $status
