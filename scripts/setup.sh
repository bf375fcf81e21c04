#!/usr/bin/env bash
# One-time setup of a fresh Debian 12 machine for Kiln: installs the Debian packages the build
# and the tests need, then configures and builds into build/ (the kiln binary, the unit and
# end-to-end tests, and the freestanding test guests). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential g++ binutils meson ninja-build pkg-config python3   # toolchain
  acpica-tools                                                        # iasl: ACPI table test
  linux-libc-dev                                                      # KVM and boot headers
  libspdlog-dev libfmt-dev libcli11-dev libtoml11-dev nlohmann-json3-dev libfdt-dev
  libarchive-dev libssl-dev libzstd-dev liblz4-dev libacl1-dev       # container images (image/)
  libnl-route-3-dev                                                   # kiln-oci: netlink, tc
  zlib1g-dev                                                          # snapshot state files: CRC-32
  libgtest-dev                                                        # tests
  clang-format                                                        # style check
  clang libclang-rt-14-dev                                            # libFuzzer targets
  curl                                                                # API tests (curl sequence)
  e2fsprogs busybox-static                                            # rootfs images (mkfs.ext4 -d, debugfs)
  stress-ng attr                                                      # Linux test: virtio-fs stress, xattrs
  podman runc containerd netavark iptables                            # image and kiln-oci tests: engines
  qemu-system-x86                                                     # guest self-check, benchmarks
)
# Where guests cannot run directly (no /dev/kvm, or a PVM /dev/kvm: scripts/lib/kvm-host.sh),
# the guest-running tests run in a QEMU VM with nested KVM (scripts/nested-kvm/), which needs a
# Debian kernel (also the Linux test's distribution kernel) and a static busybox. A host with
# VMX/SVM KVM never gets a kernel package from this script.
. scripts/lib/kvm-host.sh
if ! kvm_runs_guests; then
  packages+=(linux-image-amd64 cpio file)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -f build/build.ninja ] || meson setup build
meson compile -C build

# The Linux guest kit: kernel (built once from linux-source-6.1, then cached outside the build
# tree: ~/.cache/kiln/guest-kernel/) and a busybox ext4 root file system.
scripts/build-guest-kernel.sh --out build/guest-kernel  # kiln sandbox finds it there
scripts/build-rootfs.sh
echo "setup: done; the VMM is build/kiln. Run the tests with: scripts/test.sh"
