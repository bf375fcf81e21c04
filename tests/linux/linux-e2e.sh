#!/usr/bin/env bash
# The Linux end-to-end test: the kit's kernel (scripts/build-guest-kernel.sh) boots through
# build/kiln with the kit's ext4 image (scripts/build-rootfs.sh) as root on virtio-blk. It checks,
# from the console and from the image afterwards: the kernel found the disk and mounted ext4
# read-write; /init ran from it and printed a file the host put on the image; a file the guest
# wrote is on the image after kiln exits (debugfs); the guest rebooted and kiln exited 0; with 2
# vCPUs, Linux found the MP table in the EBDA and brought both CPUs up.
# Where /dev/kvm cannot be opened, kiln runs inside the nested-KVM VM (scripts/nested-kvm/).
# On a PVM host (see kvm-here.md) the kernel gets the PVM test fixtures and command line.
# The console log stays in build/linux-test/console.log. Writes build/linux-test/junit.xml.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build/linux-test"
mkdir -p "$out"
cd "$repo"

kvm_usable() {
  [ -c /dev/kvm ] && python3 -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null
}
kernel_args=()
cmdline="console=ttyS0 reboot=k panic=1"
cpus=2  # the APs start from Kiln's MP table (INIT/SIPI); not tried on PVM, which keeps one
if kvm_usable && [ -d /sys/module/kvm_pvm ]; then
  cpus=1
  kernel_args=(--fixtures)
  cmdline+=" nopv noxsave nopcid noinvpcid nofsgsbase nopku mitigations=off random.trust_cpu=on"
  cmdline+=" clearcpuid=smap,smep,umip,popcnt,rdpid,bmi1,bmi2,avx,avx2,avx512f,erms,fsrm,movbe,rdrand,rdseed,aes,pclmulqdq,sha_ni,adx,clflushopt,clwb"
fi
kernel="$(scripts/build-guest-kernel.sh "${kernel_args[@]}" | sed -n 's/^vmlinux: //p')"
[ -f "$kernel" ] || { echo "linux-e2e: no kernel from build-guest-kernel.sh" >&2; exit 1; }

token="host-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
echo "$token" > "$out/host-file.txt"
cat > "$out/payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E: host file says $(cat /etc/kiln-host-file.txt)"
echo "LINUX-E2E: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "guest-wrote $(cat /etc/kiln-host-file.txt)" > /guest-wrote.txt
sync
echo "LINUX-E2E: wrote /guest-wrote.txt"
PAYLOAD
chmod +x "$out/payload.sh"
rootfs="$out/rootfs.ext4"
scripts/build-rootfs.sh --out "$rootfs" --size 32 --add "$out/payload.sh:/etc/kiln-test.sh" \
  --add "$out/host-file.txt:/etc/kiln-host-file.txt" >/dev/null || exit 1

run=(build/kiln run --kernel "$kernel" --rootfs "$rootfs" --cmdline "$cmdline" --memory 256
     --cpus "$cpus")
start=$(date +%s)
if kvm_usable; then
  "${run[@]}" < /dev/null > "$out/console.log" 2>&1
  rc=$?
else
  NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-600} \
    scripts/nested-kvm/run-in-vm.sh --rw "$repo" "$repo/${run[0]}" "${run[@]:1}" \
    > "$out/console.log" 2>&1
  rc=$?
fi
echo "linux-e2e: kiln exited $rc after $(( $(date +%s) - start )) s; console log: $out/console.log"

passed=0 failed=0 cases=""
check() {  # NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); cases+="<testcase classname=\"linux\" name=\"$name\"/>"
  else failed=$((failed + 1)); echo "linux-e2e: FAILED: $name" >&2
    cases+="<testcase classname=\"linux\" name=\"$name\"><failure/></testcase>"; fi
}
log() { grep -a -q -- "$1" "$out/console.log"; }
check kiln_exit_status_0 test "$rc" -eq 0
check disk_found log "virtio_blk virtio0: \[vda\]"
check ext4_mounted log "EXT4-fs (vda): mounted"
check root_read_write log "LINUX-E2E: root /dev/root ext4 rw"
check init_ran_from_disk log "kiln-init: running /etc/kiln-test.sh"
check host_file_read log "LINUX-E2E: host file says $token"
check guest_rebooted log "reboot: Restarting system"
check mp_table_found log "found SMP MP-table at \[mem 0x0009fc00-0x0009fc0f\]"
check all_cpus_up log "smp: Brought up 1 node, $cpus CPU"
check guest_file_on_image test "$(debugfs -R 'cat /guest-wrote.txt' "$rootfs" 2>/dev/null)" = "guest-wrote $token"
echo "<testsuites><testsuite name=\"linux\">$cases</testsuite></testsuites>" > "$out/junit.xml"
echo "linux-e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
