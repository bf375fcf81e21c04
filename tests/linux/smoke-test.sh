#!/bin/sh
# Kiln Linux smoke test payload. Put it in a rootfs as /etc/kiln-test.sh:
#   scripts/build-rootfs.sh --add tests/linux/smoke-test.sh:/etc/kiln-test.sh --out IMG
# The rootfs /init runs it, prints "kiln-test: exit status N" and reboots (kiln exits 0 with
# reboot=k). Every line it prints starts with KILN-SMOKE:, and it leaves /kiln-smoke.txt on the
# root file system (read it on the host: debugfs -R 'cat /kiln-smoke.txt' IMG).
set -e
echo "KILN-SMOKE: hello from $(uname -sr) $(uname -m), cmdline: $(cat /proc/cmdline)"
echo "KILN-SMOKE: cpus $(grep -c '^processor' /proc/cpuinfo), $(awk '/^MemTotal/ {print $2, $3}' /proc/meminfo) RAM"
echo "KILN-SMOKE: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "kiln smoke test wrote this at uptime $(cut -d' ' -f1 /proc/uptime) s" >/kiln-smoke.txt
sync
echo "KILN-SMOKE: wrote /kiln-smoke.txt: $(cat /kiln-smoke.txt)"
echo "KILN-SMOKE: done"
