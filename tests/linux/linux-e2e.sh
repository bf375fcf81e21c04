#!/usr/bin/env bash
# The Linux end-to-end test: real kernels boot through build/kiln and the console and the disk
# images are checked afterwards.
#  - kit: the kit's kernel (scripts/build-guest-kernel.sh) with the kit's ext4 image
#    (scripts/build-rootfs.sh) as root on virtio-blk, 2 vCPUs: the disk is found and ext4
#    mounted read-write; /init ran from it and printed a file the host put on the image; a file
#    the guest wrote is on the image afterwards (debugfs); Linux read Kiln's ACPI tables, took
#    the UART's and the i8042's interrupts from the DSDT, found the MP table and brought both
#    vCPUs up; `poweroff -f` powered off through ACPI (S5) and kiln exited 0.
#  - cad: a short boot with --api-sock; PUT /actions SendCtrlAltDel (curl) reboots the guest
#    through its i8042 and kiln exits 0 (tests/linux/ctrl-alt-del.sh).
#  - stdin: the kit's interactive shell gets its commands from a pipe given before the guest
#    reads anything (`printf 'echo ...; poweroff -f\n' | kiln run ...`): none may be lost.
#  - debian: the distribution's own kernel (/boot/vmlinuz-VER with its initramfs, as Debian's
#    linux-image-amd64 installs it) with the kit's image as root: the Debian kernel ran, its
#    initramfs found the virtio-blk disk through Kiln's DSDT, both vCPUs came up, the kit's init
#    ran the payload from the disk and the guest powered off cleanly. Skipped (and reported as
#    skipped) on a host with no /boot/vmlinuz-*.
#
#   tests/linux/linux-e2e.sh            prepare, boot (here on VMX/SVM KVM, else in one
#                                       nested-KVM VM: scripts/nested-kvm/), check
#   tests/linux/linux-e2e.sh prepare    build the kernel (cached) and the images
#   tests/linux/linux-e2e.sh boots      run the boots here (what the nested VM runs)
#   tests/linux/linux-e2e.sh check      check the logs; writes build/linux-test/junit.xml
# Logs stay in build/linux-test/ (console-*.log, rc-*).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build/linux-test"
cd "$repo"
# shellcheck source=../../scripts/lib/kvm-host.sh
. "$repo/scripts/lib/kvm-host.sh"

cpus=2
cmdline="console=ttyS0 reboot=k panic=1"

# The newest distribution kernel with its initramfs, or nothing.
debian_kernel() {
  local k v
  for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -V); do
    v=${k#/boot/vmlinuz-}
    [ -f "/boot/initrd.img-$v" ] && echo "$v"
  done | tail -n1
}

prepare() {
  rm -rf "$out" && mkdir -p "$out"
  local kernel
  kernel="$(scripts/build-guest-kernel.sh | sed -n 's/^vmlinux: //p')"
  [ -f "$kernel" ] || { echo "linux-e2e: no kernel from build-guest-kernel.sh" >&2; return 1; }
  echo "$kernel" > "$out/kernel"
  od -An -N8 -tx8 /dev/urandom | tr -d ' ' | sed 's/^/host-/' > "$out/token"
  cp "$out/token" "$out/host-file.txt"

  cat > "$out/payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E: host file says $(cat /etc/kiln-host-file.txt)"
echo "LINUX-E2E: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "guest-wrote $(cat /etc/kiln-host-file.txt)" > /guest-wrote.txt
sync
echo "LINUX-E2E: wrote /guest-wrote.txt"
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/rootfs.ext4" --size 32 \
    --add "$out/payload.sh:/etc/kiln-test.sh" \
    --add "$out/host-file.txt:/etc/kiln-host-file.txt" >/dev/null || return 1

  cat > "$out/cad-payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E: waiting for Ctrl-Alt-Del"
sleep 600
PAYLOAD
  scripts/build-rootfs.sh --out "$out/cad-rootfs.ext4" --size 16 \
    --add "$out/cad-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1

  # No /etc/kiln-test.sh: the image starts the interactive shell, fed from a pipe.
  scripts/build-rootfs.sh --out "$out/stdin-rootfs.ext4" --size 16 >/dev/null || return 1

  cat > "$out/debian-payload.sh" <<'PAYLOAD'
#!/bin/sh
echo "LINUX-E2E-DEBIAN: kernel $(uname -r)"
echo "LINUX-E2E-DEBIAN: root $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo "LINUX-E2E-DEBIAN: cpus $(grep -c ^processor /proc/cpuinfo)"
echo "LINUX-E2E-DEBIAN: payload ran"
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/debian-rootfs.ext4" --size 32 \
    --add "$out/debian-payload.sh:/etc/kiln-test.sh" >/dev/null || return 1
  debian_kernel > "$out/debian-version"
}

# Runs each boot where kiln can run guests; each writes console-NAME.log and rc-NAME.
boots() {
  local kernel token v start
  kernel=$(cat "$out/kernel") token=$(cat "$out/token")
  # Each boot is bounded (status 124 when cut off): a guest that waits for lost input, or
  # hangs, must not hold the run until the nested VM's own limit.
  run() {  # NAME SECONDS COMMAND...: exit status to rc-NAME, seconds to time-NAME
    local name=$1 limit=$2
    shift 2
    start=$(date +%s)
    timeout -k 5 "$limit" "$@"
    echo $? > "$out/rc-$name"
    echo $(($(date +%s) - start)) > "$out/time-$name"
    echo "linux-e2e: $name boot: kiln exited $(cat "$out/rc-$name") after $(cat "$out/time-$name") s"
  }
  run kit 600 build/kiln run --kernel "$kernel" --rootfs "$out/rootfs.ext4" --cmdline "$cmdline" \
    --memory 256 --cpus "$cpus" < /dev/null > "$out/console-kit.log" 2>&1
  run cad 600 tests/linux/ctrl-alt-del.sh "$repo/build/kiln" "$kernel" "$out/cad-rootfs.ext4" \
    "$cmdline" "$out/console-cad.log" > "$out/cad.log" 2>&1
  run stdin 300 sh -c "printf 'echo LINUX-E2E-STDIN:%s; poweroff -f\n' '$token' |
    build/kiln run --kernel '$kernel' --rootfs '$out/stdin-rootfs.ext4' --memory 128" \
    > "$out/console-stdin.log" 2>&1
  v=$(cat "$out/debian-version")
  if [ -n "$v" ]; then
    run debian 900 build/kiln run --kernel "/boot/vmlinuz-$v" --initrd "/boot/initrd.img-$v" \
      --rootfs "$out/debian-rootfs.ext4" --cmdline "$cmdline" --memory 512 --cpus "$cpus" \
      < /dev/null > "$out/console-debian.log" 2>&1
  fi
}

check() {
  local token passed=0 failed=0 skipped=0 cases=""
  token=$(cat "$out/token" 2>/dev/null)
  result() {  # NAME pass|fail|skip
    case $2 in
      pass) passed=$((passed + 1)); cases+="<testcase classname=\"linux\" name=\"$1\"/>" ;;
      skip) skipped=$((skipped + 1))
            cases+="<testcase classname=\"linux\" name=\"$1\"><skipped/></testcase>" ;;
      *) failed=$((failed + 1)); echo "linux-e2e: FAILED: $1" >&2
         cases+="<testcase classname=\"linux\" name=\"$1\"><failure/></testcase>" ;;
    esac
  }
  check_() {  # NAME CONDITION...
    local name=$1
    shift
    if "$@"; then result "$name" pass; else result "$name" fail; fi
  }
  rc() { [ "$(cat "$out/rc-$1" 2>/dev/null)" = 0 ]; }
  log() { grep -a -q -E -- "$2" "$out/console-$1.log" 2>/dev/null; }

  check_ kiln_exit_status_0 rc kit
  check_ disk_found log kit "virtio_blk virtio0: \[vda\]"
  check_ ext4_mounted log kit "EXT4-fs \(vda\): mounted"
  check_ root_read_write log kit "LINUX-E2E: root /dev/root ext4 rw"
  check_ init_ran_from_disk log kit "kiln-init: running /etc/kiln-test.sh"
  check_ host_file_read log kit "LINUX-E2E: host file says $token"
  check_ acpi_tables_read log kit "ACPI: RSDP 0x00000000000E0000"
  check_ uart_irq_from_dsdt log kit "[0-9a-f]{2}:[0-9a-f]{2}: ttyS0 at I/O 0x3f8"
  check_ i8042_from_dsdt log kit "serio: i8042 KBD port at 0x60,0x64 irq"
  check_ acpi_poweroff log kit "reboot: Power down"
  check_ mp_table_found log kit "found SMP MP-table at \[mem 0x0009fc00-0x0009fc0f\]"
  check_ all_cpus_up log kit "smp: Brought up 1 node, $cpus CPU"
  check_ guest_file_on_image test "$(debugfs -R 'cat /guest-wrote.txt' "$out/rootfs.ext4" \
    2>/dev/null)" = "guest-wrote $token"
  check_ ctrl_alt_del_accepted grep -a -q "ctrl-alt-del: api status 204" "$out/cad.log"
  check_ ctrl_alt_del_rebooted log cad "reboot: Restarting system"
  check_ ctrl_alt_del_kiln_exit_0 rc cad
  # The echo's output line (not the echoed input: the shell prints the command it read too).
  check_ stdin_piped_commands_ran log stdin "^LINUX-E2E-STDIN:$token"
  check_ stdin_poweroff_exit_0 rc stdin
  if [ -n "$(cat "$out/debian-version" 2>/dev/null)" ]; then
    local v
    v=$(cat "$out/debian-version")
    check_ debian_kernel_ran log debian "Linux version ${v//./\\.} .*Debian"
    check_ debian_acpi_disk log debian "virtio_blk virtio[0-9]+: \[vda\]"
    check_ debian_all_cpus_up log debian "smp: Brought up 1 node, $cpus CPU"
    check_ debian_root_mounted log debian "LINUX-E2E-DEBIAN: root /dev/vda ext4 rw"
    check_ debian_payload_ran log debian "LINUX-E2E-DEBIAN: payload ran"
    check_ debian_poweroff log debian "reboot: Power down"
    check_ debian_kiln_exit_0 rc debian
  else
    echo "linux-e2e: no /boot/vmlinuz-VER with /boot/initrd.img-VER: Debian kernel boot skipped"
    result debian_kernel_boot skip
  fi
  echo "<testsuites><testsuite name=\"linux\">$cases</testsuite></testsuites>" > "$out/junit.xml"
  echo "linux-e2e: $passed passed, $failed failed, $skipped skipped (logs: $out)"
  [ "$failed" -eq 0 ]
}

case "${1:-all}" in
  prepare) prepare ;;
  boots) boots ;;
  check) check ;;
  all)
    prepare || exit 1
    if kvm_runs_guests; then
      boots
    else
      NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_TIMEOUT=${NESTED_KVM_TIMEOUT:-900} \
        scripts/nested-kvm/run-in-vm.sh --rw "$repo" "$repo/tests/linux/linux-e2e.sh" boots
    fi
    check
    ;;
  *) echo "usage: $0 [prepare|boots|check]" >&2; exit 2 ;;
esac
