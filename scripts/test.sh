#!/usr/bin/env bash
# Runs every test and ends with one line "N passed, N failed, N skipped" counting test cases:
#  1. the unit, guest and end-to-end suites on build/;
#  2. where /dev/kvm cannot be opened: the end-to-end suite again inside a QEMU TCG VM with
#     nested KVM (scripts/nested-kvm/), so the guest-running tests really run;
#  3. the unit and end-to-end suites on an ASan+UBSan build (build-asan/).
# KILN_SKIP_ASAN=1 skips 3; KILN_SKIP_NESTED=1 skips 2.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
logs=(build/meson-logs/testlog.junit.xml)
status=0

meson test -C build --print-errorlogs || status=1

kvm_usable() { [ -c /dev/kvm ] && python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; }
if ! kvm_usable && [ "${KILN_SKIP_NESTED:-0}" != 1 ]; then
  echo "test: /dev/kvm is not usable here; running the end-to-end tests under nested KVM in QEMU"
  out="$repo/build/nested-kvm/results"
  rm -rf "$out" && mkdir -p "$out"
  NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-900} scripts/nested-kvm/run-in-vm.sh --rw "$out" env KILN_BIN="$repo/build/kiln" \
    KILN_GUEST_DIR="$repo/build/tests/guests" "$repo/build/tests/e2e_tests" \
    --gtest_output="xml:$out/e2e-nested.xml" || status=1
  if [ -f "$out/e2e-nested.xml" ]; then logs+=("$out/e2e-nested.xml"); else status=1; fi
fi

if [ "${KILN_SKIP_ASAN:-0}" != 1 ]; then
  [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
  meson compile -C build-asan >/dev/null || status=1
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --no-suite guests || status=1
  logs+=(build-asan/meson-logs/testlog.junit.xml)
fi

python3 scripts/count_tests.py "${logs[@]}" || status=1
exit $status
