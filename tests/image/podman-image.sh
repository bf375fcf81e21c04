#!/bin/sh
# Opens images that Podman wrote (podman save --format oci-archive and docker-archive) with
# image/, through tests/image/image_open.cc: a busybox-static root file system is imported
# (`podman import`), a second layer with a whiteout and an opaque directory is added by
# `podman build` when a runtime works here, both archives are saved and unpacked, and the tree
# is compared with what went in. Podman keeps its state in a temporary directory (--root,
# --runroot, vfs), never in the machine's storage.
#   tests/image/podman-image.sh KILN_IMAGE_OPEN
# Exits 77 (skip) when podman or busybox is missing or podman cannot run here, says why.
set -eu

tool=${1:?usage: $0 PATH-TO-kiln-image-open}
skip() { echo "SKIP: $*"; exit 77; }
command -v podman >/dev/null 2>&1 || skip "podman is not installed (apt-get install podman)"
busybox=/bin/busybox
[ -x "$busybox" ] || skip "no $busybox (apt-get install busybox-static)"
# A dynamic busybox would not run in the unpacked root (no libraries there).
! readelf -l "$busybox" 2>/dev/null | grep -q INTERP || skip "$busybox is not static (busybox-static)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-podman-image-XXXXXX")
cleanup() {
  # vfs layers may hold read-only directories; podman's own reset is not needed for a scratch root.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
pm() { podman --root "$work/root" --runroot "$work/runroot" --storage-driver vfs "$@"; }

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/data/sub"
cp "$busybox" "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
ln "$work/rootfs/bin/busybox" "$work/rootfs/bin/busybox-hard"
printf 'root:x:0:0:root:/root:/bin/sh\nsvc:x:77:78:svc:/srv:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\nsvc:x:78:\n' > "$work/rootfs/etc/group"
echo gone > "$work/rootfs/etc/gone"
echo lower > "$work/rootfs/data/sub/lower"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

start=$(date +%s%N)
pm import --change 'CMD ["/bin/sh","-c","echo hi"]' --change 'ENV A=1' \
  --change 'WORKDIR /data' "$work/rootfs.tar" localhost/kiln-image-test:base >/dev/null 2>&1 ||
  skip "podman import failed here"
echo "podman import: $(( ($(date +%s%N) - start) / 1000000 )) ms"
image=localhost/kiln-image-test:base
two_layers=0
# A second layer made by a RUN step needs an OCI runtime: runc with the settings of
# /work/shared/docs/engines-here.md. Without one, the test goes on with the one-layer image.
cat > "$work/Containerfile" <<'CF'
FROM localhost/kiln-image-test:base
RUN rm /etc/gone && rm -r /data/sub && mkdir /data/sub && echo upper > /data/sub/upper
USER svc
CF
if pm build --runtime runc --cgroup-manager cgroupfs --ulimit nofile=1024:1024 \
     --ulimit nproc=1024:1024 --network none -t localhost/kiln-image-test:two \
     -f "$work/Containerfile" "$work" >"$work/build.log" 2>&1; then
  image=localhost/kiln-image-test:two
  two_layers=1
else
  echo "note: podman build failed here (see below); testing the one-layer image only"
  tail -3 "$work/build.log"
fi

for format in oci-archive docker-archive; do
  start=$(date +%s%N)
  pm save --format "$format" -o "$work/$format.tar" "$image" >/dev/null 2>&1
  echo "podman save --format $format: $(( ($(date +%s%N) - start) / 1000000 )) ms," \
    "$(stat -c %s "$work/$format.tar") bytes"
done

fail() { echo "FAIL: $*"; exit 1; }
if [ "$two_layers" = 1 ]; then
  # What podman put in the second layer: the whiteout and the opaque marker this test checks.
  top=$(tar -xOf "$work/docker-archive.tar" manifest.json | sed 's/.*"Layers":\[//; s/\].*//' |
    tr ',' '\n' | tail -1 | tr -d '"')
  tar -xOf "$work/docker-archive.tar" "$top" | tar -t | grep '\.wh\.' | sed 's/^/second layer: /'
fi
get() { sed -n "s/^$1=//p" "$2"; }
cache=$work/cache
for format in oci-archive docker-archive; do
  rm -rf "$cache"
  start=$(date +%s%N)
  "$tool" --cache "$cache" "$work/$format.tar" > "$work/out1" || fail "$format: open failed"
  t1=$(( ($(date +%s%N) - start) / 1000000 ))
  start=$(date +%s%N)
  "$tool" --cache "$cache" "$work/$format.tar:${image##*:}" > "$work/out2" ||
    fail "$format: second open (by tag) failed"
  t2=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$format: first open (unpack) $t1 ms, second open (cached) $t2 ms"
  [ "$(get unpacked "$work/out1")" = 1 ] || fail "$format: first open did not unpack"
  [ "$(get unpacked "$work/out2")" = 0 ] || fail "$format: second open unpacked again"
  rootfs=$(get rootfs "$work/out1")
  cmp "$busybox" "$rootfs/bin/busybox" || fail "$format: bin/busybox differs"
  [ "$(readlink "$rootfs/bin/sh")" = busybox ] || fail "$format: bin/sh is not the symlink"
  [ "$(stat -c %i "$rootfs/bin/busybox")" = "$(stat -c %i "$rootfs/bin/busybox-hard")" ] ||
    fail "$format: the hard link is not one"
  [ "$(get argv "$work/out1")" = "/bin/sh -c echo hi" ] || fail "$format: argv $(get argv "$work/out1")"
  [ "$(get cwd "$work/out1")" = /data ] || fail "$format: cwd"
  get env "$work/out1" | grep -q 'A=1' || fail "$format: env"
  if [ "$two_layers" = 1 ]; then
    [ ! -e "$rootfs/etc/gone" ] || fail "$format: whiteout not applied"
    [ ! -e "$rootfs/data/sub/lower" ] || fail "$format: opaque directory / removal not applied"
    [ "$(cat "$rootfs/data/sub/upper")" = upper ] || fail "$format: upper layer missing"
    [ "$(get uid "$work/out1"):$(get gid "$work/out1")" = 77:78 ] || fail "$format: user svc"
  fi
  if [ "$(id -u)" = 0 ]; then
    [ "$(chroot "$rootfs" /bin/sh -c 'echo works')" = works ] || fail "$format: chroot sh"
  fi
  echo "ok: $format ($(get entries "$work/out1") entries, $(get bytes "$work/out1") bytes)"
done
[ "$(get digest "$work/out1")" != "" ] || fail "no digest"
echo "PASS (layers: $((two_layers + 1)))"
