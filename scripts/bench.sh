#!/usr/bin/env bash
# Kiln's performance baseline, beside QEMU (-M microvm -accel kvm) in the same run. Builds what
# it needs, runs every figure, prints one table and writes build/bench/results.json. Benchmarks
# print figures; none of this is a test.
#
#   scripts/bench.sh [--runs N] [--density-seconds S] [--boot] [--boot-runs N]
#                    [--blk-runs N] [--vsock-runs N] [--vsock-mib N] [--no-build]
#   scripts/bench.sh --fs [--no-build]
#   scripts/bench.sh --sandbox [--runs N] [--no-build]
#   scripts/bench.sh --snapshot [--runs N] [--no-build]
#
#   --runs N             runs per start-up / footprint / first-instruction figure (default 10)
#   --density-seconds S  how long to keep starting idle VMs (default 10)
#   --boot               also boot the kit's kernel to "Run /init" in both VMMs (minutes here)
#   --boot-runs N        boots per VMM with --boot (default 1)
#   --blk-runs N, --vsock-runs N   runs of bench/blk_bench (also bench/net_bench, as root) and
#                        bench/vsock_bench (default 3)
#   --vsock-mib N        MiB per direction for vsock_bench (default 256)
#   --fs                 only the virtio-fs figures from a Linux guest (bench/fs_ops.sh: 64 MiB
#                        write, read, reread; 500 creates, stats, unlinks) beside the same
#                        operations on the shared directory itself; writes build/bench/fs-*.txt
#   --sandbox            only `kiln sandbox run ROOT -- true` (a docker-archive and an ext4
#                        image of the kit's busybox tree) and `podman --runtime kiln-oci run
#                        --rm IMAGE true` beside `podman --runtime runc run --rm IMAGE true` on
#                        the same image, --runs rounds (default 10) of bench/sandbox_bench.sh;
#                        writes build/bench/sandbox-*.txt and .json
#   --snapshot           only the snapshot figures (bench/snapshot_bench.py: Full and Diff
#                        create, restore host side and to the guest's next line, the restored
#                        RSS, beside process start and a cold boot; 128 MiB and 1 GiB guests,
#                        --runs rounds, default 5); writes build/bench/snapshot.txt
#
# Where /dev/kvm works everything runs here. Where it does not, the Kiln-and-QEMU figures run
# inside the nested-KVM VM (scripts/nested-kvm/run-in-vm.sh, everything emulated: absolute times
# are large, the ratios are the result), and Kiln's start-up and footprint, which need no KVM,
# are also measured on the host. blk_bench and vsock_bench need no KVM and run here.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

runs=10 density_s=10 boot=0 boot_runs=1 blk_runs=3 vsock_runs=3 vsock_mib=256 build=1 fs=0
sandbox=0 snapshot=0
other=""    # the last option that neither --fs nor --sandbox takes
runs_opt="" # --runs, which --sandbox takes and --fs does not
while (($#)); do
  case "$1" in
    --runs) runs=$2; runs_opt=$1; shift ;;
    --density-seconds) density_s=$2; other=$1; shift ;;
    --boot) boot=1; other=$1 ;;
    --boot-runs) boot_runs=$2; other=$1; shift ;;
    --blk-runs) blk_runs=$2; other=$1; shift ;;
    --vsock-runs) vsock_runs=$2; other=$1; shift ;;
    --vsock-mib) vsock_mib=$2; other=$1; shift ;;
    --no-build) build=0 ;;
    --fs) fs=1 ;;
    --sandbox) sandbox=1 ;;
    --snapshot) snapshot=1 ;;
    -h|--help) sed -n '2,35s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((fs && sandbox)); then
  echo "bench: --fs and --sandbox are separate benchmarks (run them one at a time)" >&2
  exit 2
fi
if ((fs)) && [ -n "$other$runs_opt" ]; then
  echo "bench: --fs runs only the virtio-fs figures and takes no ${other:-$runs_opt}" \
    "(run them separately)" >&2
  exit 2
fi
if ((sandbox)) && [ -n "$other" ]; then
  echo "bench: --sandbox runs only the sandbox figures and takes no $other" \
    "(run them separately)" >&2
  exit 2
fi

# --snapshot: the snapshot test guest; kiln copied to a tmpfs first where it runs in the nested
# VM (its 9p view of the repository has no page cache, and every exec would page kiln over it).
if ((snapshot)); then
  if ((fs || sandbox)) || [ -n "$other" ]; then
    echo "bench: --snapshot runs only the snapshot figures (run the others separately)" >&2
    exit 2
  fi
  out="$repo/build/bench"
  mkdir -p "$out"
  if ((build)); then
    [ -d build ] || meson setup build >/dev/null
    ninja -C build kiln tests/guests/guest-snapshot.elf
  fi
  [ -n "$runs_opt" ] || runs=5
  . "$repo/scripts/lib/kvm-host.sh"
  cmd="cp $repo/build/kiln /tmp/kiln-bench && KILN_BENCH_KILN=/tmp/kiln-bench python3 $repo/bench/snapshot_bench.py --runs $runs"
  if kvm_runs_guests; then
    echo "snapshot figures: this host (KVM)" | tee "$out/snapshot.txt"
    sh -c "$cmd" | tee -a "$out/snapshot.txt"
  else
    echo "snapshot figures: nested-KVM VM (QEMU TCG, guest on nested KVM; absolute figures are" \
      "slow, the ratios are the result)" | tee "$out/snapshot.txt"
    NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} scripts/nested-kvm/run-in-vm.sh --rw "$repo" sh -c "$cmd" |
      grep -v '^nested-kvm:\|^NESTED-EXIT\|reboot:' | tee -a "$out/snapshot.txt"
  fi
  exit 0
fi

# --sandbox: kiln with the kit's kernel and the agent's initramfs beside it (build/guest-kernel,
# build/agent, as setup.sh leaves them); bench/sandbox_bench.sh makes the roots and Podman's
# state under its TMPDIR and runs both.
if ((sandbox)); then
  out="$repo/build/bench"
  mkdir -p "$out"
  rm -f "$out"/sandbox-*.txt "$out"/sandbox-*.json
  if ((build)); then
    [ -d build ] || meson setup build >/dev/null
    ninja -C build kiln agent/kiln-agent.cpio
    scripts/build-guest-kernel.sh --out build/guest-kernel >/dev/null
  fi
  for f in build/kiln build/guest-kernel/vmlinux build/agent/kiln-agent.cpio; do
    [ -e "$f" ] || { echo "bench: $f missing (build it: scripts/bench.sh --sandbox)" >&2; exit 1; }
  done
  [ -n "$runs_opt" ] || runs=10
  . "$repo/scripts/lib/kvm-host.sh"
  run=(bench/sandbox_bench.sh --runs "$runs" "$repo/build/kiln" "$out")
  if kvm_runs_guests; then
    where="this host (KVM)"
    "${run[@]}" | tee "$out/sandbox-run.txt"
  else
    where="nested-KVM VM (QEMU TCG, guest on nested KVM)"
    echo "bench: guests cannot run here ($(kvm_host_kind) /dev/kvm): the sandbox figures come" \
      "from the nested-KVM VM" >&2
    NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_MEM=${NESTED_KVM_MEM:-2048} \
      scripts/nested-kvm/run-in-vm.sh --rw "$repo" "${run[@]}" | tee "$out/sandbox-run.txt"
  fi
  [ -s "$out/sandbox-results.json" ] ||
    { echo "bench: the sandbox run wrote no results (see above)" >&2; exit 1; }
  echo
  echo "kiln sandbox run ROOT -- true and podman --runtime kiln-oci run --rm IMAGE true beside"
  echo "podman --runtime runc run --rm IMAGE true:"
  echo "  $where"
  case $where in nested*)
    echo "(everything is emulated there, Kiln's guest on nested KVM: absolute figures are slow,"
    echo " the ratios are the result)" ;;
  esac
  python3 bench/sandbox_bench.py report "$out/sandbox-results.json" | tee "$out/sandbox-table.txt"
  exit 0
fi

# --fs: the kit's kernel and an image whose /etc/kiln-test.sh mounts the share and runs
# bench/fs_ops.sh; bench/fs_guest_bench.sh boots it and runs the same script on the directory.
if ((fs)); then
  out="$repo/build/bench"
  mkdir -p "$out"
  rm -f "$out"/fs-*.txt "$out"/fs-console.log
  if ((build)); then
    [ -d build ] || meson setup build >/dev/null
    ninja -C build kiln
  fi
  vmlinux="$(scripts/build-guest-kernel.sh | sed -n 's/^vmlinux: //p')"
  cat > "$out/fs-payload.sh" <<'PAYLOAD'
#!/bin/sh
mkdir -p /mnt/bench
mount -t virtiofs bench /mnt/bench || echo "FSBENCH guest FAILED mount"
mkdir -p /mnt/benchalways
mount -t virtiofs benchalways /mnt/benchalways || echo "FSBENCH guest_always FAILED mount"
sh /etc/kiln-fs-ops.sh /mnt/bench guest
sh /etc/kiln-fs-ops.sh /mnt/benchalways guest_always
poweroff -f
PAYLOAD
  scripts/build-rootfs.sh --out "$out/fs-rootfs.ext4" --size 32 \
    --add "$out/fs-payload.sh:/etc/kiln-test.sh" --add "$repo/bench/fs_ops.sh:/etc/kiln-fs-ops.sh" \
    >/dev/null
  . "$repo/scripts/lib/kvm-host.sh"
  run=(bench/fs_guest_bench.sh "$repo/build/kiln" "$vmlinux" "$out/fs-rootfs.ext4" "$out")
  if kvm_runs_guests; then
    where="this host (KVM)"
    "${run[@]}"
  else
    where="nested-KVM VM (QEMU TCG, guest on nested KVM)"
    echo "bench: guests cannot run here ($(kvm_host_kind) /dev/kvm): the fs figures come" \
      "from the nested-KVM VM" >&2
    NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_MEM=${NESTED_KVM_MEM:-2048} \
      scripts/nested-kvm/run-in-vm.sh --rw "$repo" "${run[@]}"
  fi
  echo
  echo "virtio-fs from a Linux guest (cache=auto and cache=always) beside the shared directory:"
  echo "  $where"
  case $where in nested*)
    echo "(everything is emulated there and each guest exit costs a nested-KVM round trip:"
    echo " absolute figures are slow, the ratios are the result)" ;;
  esac
  awk -F'[ =]' '
    $1 == "FSBENCH" && $3 ~ /_(MBps|per_s)$/ {
      v[$2, $3] = $4; if (!($3 in seen)) { seen[$3] = 1; ops[++n] = $3 } }
    $1 == "FSBENCH" && $3 == "drop_caches" { dc[$2] = $4 }
    function ratio(a, b) { return (a != "" && b > 0) ? sprintf("%.2f", a / b) : "-" }
    END {
      f = "%-13s %12s %10s %6s   %12s %6s\n"
      printf f, "op", "guest (auto)", "host dir", "ratio", "guest always", "ratio"
      for (i = 1; i <= n; i++) {
        k = ops[i]; g = v["guest", k]; a = v["guest_always", k]; h = v["host", k]
        printf f, k, g, h, ratio(g, h), a, ratio(a, h)
      }
      print "ratio = guest / host dir (1.00 = as fast as the directory itself); MBps = MiB/s"
      printf "drop_caches before the first read: guest %s, guest always %s, host %s (1 = done)\n",
        dc["guest"], dc["guest_always"], dc["host"]
    }' "$out/fs-results.txt" | tee "$out/fs-table.txt"
  cat <<'NOTE'
The reread with cache=auto goes through the device again: the share gives no FOPEN_KEEP_CACHE,
so Linux drops a file's cached pages at each open (as with virtiofsd's cache=auto); with
cache=always the reread comes from the guest's page cache. The host's directory is on tmpfs in
the nested VM, so its "read after drop_caches" is from memory too.
NOTE
  exit 0
fi

# The kiln measured is the release build a user deploys (README "Production build"): -O3, LTO,
# static-pie. The benches, spawn_probe and the test guests come from the usual build/.
if ((build)); then
  [ -d build ] || meson setup build >/dev/null
  [ -d build-release ] || meson setup build-release --buildtype=release -Db_lto=true >/dev/null
  ninja -C build-release kiln
  ninja -C build bench/blk_bench bench/vsock_bench bench/net_bench bench/spawn_probe \
    tests/guests/guest-hello.elf tests/guests/guest-hello.bzimage tests/guests/guest-idle.elf \
    tests/guests/guest-idle.bzimage
fi
export KILN_BENCH_KILN="$repo/build-release/kiln"
out="$repo/build/bench"
mkdir -p "$out"
rm -f "$out"/raw-*.json "$out"/blk-*.txt "$out"/vsock-*.txt "$out"/net-*.txt "$out"/other-*.txt

boot_args=()
if ((boot)); then
  kernel_out="$(scripts/build-guest-kernel.sh)"
  vmlinux="$(sed -n 's/^vmlinux: //p' <<<"$kernel_out")"
  bzimage="$(sed -n 's/^bzImage: //p' <<<"$kernel_out")"
  rootfs="$out/rootfs.ext4"
  scripts/build-rootfs.sh --out "$rootfs" --size 32 >/dev/null
  boot_args=(--boot --boot-runs "$boot_runs" --kernel "$vmlinux" --bzimage "$bzimage"
             --rootfs "$rootfs")
fi

. "$repo/scripts/lib/kvm-host.sh"
measure=(python3 "$repo/bench/vmm_bench.py" measure --runs "$runs" --density-seconds "$density_s"
         "${boot_args[@]}")
raw=()
if kvm_runs_guests; then
  "${measure[@]}" --where host --out "$out/raw-host.json"
  raw+=("$out/raw-host.json")
else
  echo "bench: guests cannot run here ($(kvm_host_kind) /dev/kvm): Kiln-only start-up/footprint here, the rest in the nested-KVM VM" >&2
  "${measure[@]}" --kiln-only --where "host (Kiln only)" --out "$out/raw-host.json"
  # The repository is shared into the VM uncached (9p cache=none: every page fault of a binary
  # there is a 9p read), while QEMU comes from the VM's cached root: kiln is copied to the VM's
  # tmpfs first so both are paged from memory.
  # shellcheck disable=SC2016  # expanded inside the VM
  NESTED_KVM_SMP=${NESTED_KVM_SMP:-1} NESTED_KVM_MEM=${NESTED_KVM_MEM:-4096} \
    scripts/nested-kvm/run-in-vm.sh --rw "$repo" sh -c \
    'cp "$1" /tmp/kiln && shift && KILN_BENCH_KILN=/tmp/kiln exec "$@"' sh "$KILN_BENCH_KILN" \
    "${measure[@]}" --where "nested KVM (TCG)" --out "$out/raw-nested.json"
  raw+=("$out/raw-nested.json" "$out/raw-host.json")
fi

report=(python3 "$repo/bench/vmm_bench.py" report "${raw[@]}" --out "$out/results.json")
for ((i = 1; i <= blk_runs; i++)); do
  echo "bench: blk_bench $i/$blk_runs" >&2
  build/bench/blk_bench > "$out/blk-$i.txt"
  report+=(--blk "$out/blk-$i.txt")
done
for ((i = 1; i <= vsock_runs; i++)); do
  echo "bench: vsock_bench $i/$vsock_runs" >&2
  build/bench/vsock_bench "$vsock_mib" > "$out/vsock-$i.txt"
  report+=(--vsock "$out/vsock-$i.txt")
done
# net_bench makes a private network namespace with a TAP: it needs root (CAP_NET_ADMIN).
for ((i = 1; i <= blk_runs; i++)); do
  echo "bench: net_bench $i/$blk_runs" >&2
  if build/bench/net_bench > "$out/net-$i.txt" 2>&1; then
    report+=(--net "$out/net-$i.txt")
  else
    echo "bench: net_bench failed (not root?): $(tail -1 "$out/net-$i.txt")" >&2
    break
  fi
done
"${report[@]}"
