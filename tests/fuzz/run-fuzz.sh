#!/bin/sh
# Builds and runs a libFuzzer target: tests/fuzz/run-fuzz.sh TARGET SECONDS [libFuzzer flags...]
#   TARGET   http (tests/fuzz/http_parser_fuzz.cc), api (tests/fuzz/api_json_fuzz.cc),
#            fuse (tests/fuzz/fuse_fuzz.cc: virtio-fs's FUSE server over a temporary share),
#            image (tests/fuzz/image_fuzz.cc: container images' JSON documents),
#            oci (tests/fuzz/oci_spec_fuzz.cc: kiln-oci's config.json and process.json),
#            snapshot (tests/fuzz/snapshot_fuzz.cc: snapshot state files and the vCPU, VM and
#            virtqueue state read from their sections),
#            devices (tests/fuzz/devices_fuzz.cc: the virtio-mmio registers, virtqueues and the
#            requests of virtio-blk, -rng, -balloon and -console; serial, i8042, ACPI PM ports),
#            agent (tests/fuzz/agent_fuzz.cc: the agent protocol's frames as the host reads them),
#            loaders (tests/fuzz/loaders_fuzz.cc: ELF and bzImage kernels, initrds, command lines)
#   SECONDS  -max_total_time
# Needs Debian's clang and libclang-rt-14-dev. Builds (line tables only: traces keep their lines,
# the build is quicker) into $KILN_FUZZ_OUT (default build/fuzz);
# new corpus entries go to $KILN_FUZZ_OUT/corpus-TARGET (the seed corpus in
# tests/fuzz/corpus/TARGET is only read), crashes to $KILN_FUZZ_OUT/TARGET-crash-*.
# KILN_FUZZ_OPT: the optimization flag (default -O1; CI's short runs use -O0, which builds in
# about 60% of the time).
# Reproduce a crash: $KILN_FUZZ_OUT/TARGET-fuzz $KILN_FUZZ_OUT/TARGET-crash-...
set -eu

if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${KILN_FUZZ_OUT:-$repo/build/fuzz}
cxx=${CXX_FUZZ:-clang++}

case $target in
  http)
    sources="tests/fuzz/http_parser_fuzz.cc api/http/http_parser.cc api/http/http.cc api/utf8.cc"
    extra_flags="-dict=$repo/tests/fuzz/http.dict -max_len=8192"
    ;;
  api)
    sources="tests/fuzz/api_json_fuzz.cc api/routes.cc api/json_fields.cc api/vm_json.cc api/net_json.cc api/fs_json.cc
             api/balloon_json.cc api/config_files.cc
             api/snapshot_json.cc
             base/mac_address.cc api/http/http.cc api/utf8.cc api/nesting.cc base/json_nesting.cc
             base/toml_nesting.cc
             vmm/vm_config_ops.cc"
    extra_flags="-max_len=4096"
    ;;
  fuse)
    sources="tests/fuzz/fuse_fuzz.cc devices/virtio/fs/fuse_server.cc devices/virtio/fs/fuse_entry_ops.cc
             devices/virtio/fs/fuse_file_ops.cc devices/virtio/fs/fuse_dir_ops.cc
             devices/virtio/fs/fuse_xattr_ops.cc devices/virtio/fs/inode_table.cc
             devices/virtio/chain_io.cc"
    extra_flags="-max_len=16384"
    ;;
  image)
    sources="tests/fuzz/image_fuzz.cc image/manifest.cc image/image_config.cc image/json_doc.cc
             image/digest.cc base/json_nesting.cc"
    extra_flags="-max_len=8192"
    libs="-lcrypto"
    ;;
  oci)
    sources="tests/fuzz/oci_spec_fuzz.cc oci/spec.cc agent/boot_config.cc sandbox/volume.cc
             base/json_nesting.cc"
    extra_flags="-max_len=8192"
    ;;
  snapshot)
    sources="tests/fuzz/snapshot_fuzz.cc base/snapshot/state_file.cc base/snapshot/bytes.cc
             base/snapshot/atomic_file.cc arch/x86_64/vcpu_state.cc arch/x86_64/vm_state.cc
             base/kvm.cc base/mapping.cc base/guest_memory.cc devices/virtio/queue.cc"
    extra_flags="-max_len=16384"  # a vCPU's section alone is 7 KiB (XSAVE, LAPIC)
    libs="-lz"
    ;;
  devices)
    sources="tests/fuzz/devices_fuzz.cc devices/virtio/queue.cc devices/virtio/mmio_transport.cc
             devices/virtio/chain_io.cc devices/virtio/block/block_device.cc
             devices/virtio/rng/rng_device.cc devices/virtio/balloon/balloon_device.cc
             devices/virtio/console/console_device.cc devices/legacy/serial.cc
             devices/legacy/i8042.cc devices/legacy/acpi_pm.cc devices/rate_limiter/rate_limiter.cc
             devices/rate_limiter/token_bucket.cc base/guest_memory.cc base/mapping.cc
             base/snapshot/bytes.cc"
    extra_flags="-max_len=16384"
    ;;
  agent)
    sources="tests/fuzz/agent_fuzz.cc agent/protocol/messages.cc"
    extra_flags="-max_len=8192"
    ;;
  loaders)
    sources="tests/fuzz/loaders_fuzz.cc boot/boot_params.cc boot/bzimage.cc boot/elf_loader.cc
             boot/image_file.cc boot/kernel_image.cc boot/linux_loader.cc base/guest_memory.cc
             base/mapping.cc"
    extra_flags="-max_len=65536"  # the seeds are the test guests (about 40 KiB)
    ;;
  *)
    echo "$0: unknown fuzz target '$target' (known: http, api, fuse, image, oci, snapshot, devices, agent, loaders)" >&2
    exit 2
    ;;
esac

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "$0: $cxx not found: apt-get install clang libclang-rt-14-dev" >&2
  exit 1
fi

mkdir -p "$out/corpus-$target"
bin=$out/$target-fuzz
# shellcheck disable=SC2086  # $sources is a word list
(cd "$repo" && "$cxx" -std=c++20 -gline-tables-only ${KILN_FUZZ_OPT:--O1} -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -Wall -Wextra -Werror -D_GNU_SOURCE -DSPDLOG_FMT_EXTERNAL -I"$repo" $sources -lfmt ${libs:-} -o "$bin")

echo "fuzzing $target for ${seconds}s"
# shellcheck disable=SC2086
# libFuzzer reports a finding with exit status 77 by default, which meson counts as a skip.
exec "$bin" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/$target-" $extra_flags "$@" \
  "$out/corpus-$target" "$repo/tests/fuzz/corpus/$target"
