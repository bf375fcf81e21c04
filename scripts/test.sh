#!/usr/bin/env bash
# Runs every test: the unit, guest and end-to-end suites on build/, then the unit and
# end-to-end suites again on an ASan+UBSan build (build-asan/). Prints one closing line
# "N passed, N failed, N skipped" counting individual test cases.
# Guest-running end-to-end tests are skipped (and say so) where /dev/kvm cannot be opened.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
meson test -C build --print-errorlogs || status=1

if [ "${KILN_SKIP_ASAN:-0}" != 1 ]; then
  [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false >/dev/null
  meson compile -C build-asan >/dev/null || status=1
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --no-suite guests || status=1
fi

python3 scripts/count_tests.py build/meson-logs/testlog.junit.xml \
  $( [ "${KILN_SKIP_ASAN:-0}" != 1 ] && echo build-asan/meson-logs/testlog.junit.xml ) || status=1
exit $status
