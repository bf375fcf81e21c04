#!/usr/bin/env bash
# Builds Kiln's x86-64 guest kernel (an uncompressed vmlinux and a bzImage) from Debian's
# linux-source-6.1 package with the config fragment scripts/guest-kernel/microvm.config.
#
#   scripts/build-guest-kernel.sh [--out DIR]
#
#   --out DIR   also copy vmlinux, bzImage and config into DIR.
#
# The result is cached outside the build tree in
#   ${KILN_CACHE:-$HOME/.cache/kiln}/guest-kernel/<key>/{vmlinux,bzImage,config,build.log}
# where <key> is a sha256 of the recipe version below, the config fragment, the source package
# version and the compiler version (not of this whole script: editing a comment here must not
# cost CI a 20-minute kernel build). A second run with the same inputs takes seconds.
# The last two lines printed are the paths: "vmlinux: PATH" and "bzImage: PATH".
#
# The configuration is `make allnoconfig` with the fragment forced in (KCONFIG_ALLCONFIG), then
# `make olddefconfig`; every option the fragment sets must survive, or the script fails naming
# the options that did not (Kconfig silently drops options whose dependencies are unmet).
# Set KILN_KEEP_KERNEL_BUILD=1 to keep the build tree next to the cache entry.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
script="$repo/scripts/build-guest-kernel.sh"
fragment="$repo/scripts/guest-kernel/microvm.config"
source_pkg=linux-source-6.1
tarball=/usr/src/linux-source-6.1.tar.xz
cache_root="${KILN_CACHE:-$HOME/.cache/kiln}/guest-kernel"
# Bump when a change below alters what is built (configuration steps, make targets, outputs).
recipe=2

out=""
usage() { sed -n '2,22s/^# \{0,1\}//p' "$script"; }
while (($#)); do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "build-guest-kernel: --out needs a directory" >&2; exit 2; }
           out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-guest-kernel: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "build-guest-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Build dependencies ----------------------------------------------------------------------
# The kernel's host tools need: bc (timeconst), bison+flex (kconfig), libelf-dev (objtool, which
# every x86-64 build runs), xz-utils (to unpack the source), gcc/make/libc6-dev (the compiler).
# libssl-dev, cpio and kmod are not needed by this configuration: no module signing or trusted
# keyring (certs/extract-cert, scripts/sign-file), no IKHEADERS, no modules_install/depmod.
packages=(linux-source-6.1 xz-utils bc bison flex libelf-dev gcc make libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -f "$tarball" ] || die "$tarball is missing although $source_pkg is installed"

# --- Cache key --------------------------------------------------------------------------------
src_version=$(dpkg-query -W -f='${Version}' "$source_pkg")
cc_version=$(gcc --version | head -n1)
key=$(
  {
    echo "source $source_pkg $src_version"
    echo "cc $cc_version"
    echo "recipe $recipe"
    echo "fragment $(sha256sum <"$fragment" | cut -d' ' -f1)"
  } | sha256sum | cut -c1-16
)
dest="$cache_root/$key"

publish() {
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp -f "$dest/vmlinux" "$dest/bzImage" "$out/"
    cp -f "$dest/config" "$out/config"
    log "copied vmlinux, bzImage and config to $out"
  fi
  echo "vmlinux: $dest/vmlinux"
  echo "bzImage: $dest/bzImage"
}

mkdir -p "$cache_root"
# One build per key at a time; a second caller waits and then finds the result.
exec 9>"$cache_root/.$key.lock"
flock 9
if [ -f "$dest/vmlinux" ] && [ -f "$dest/bzImage" ]; then
  log "cached ($src_version): $dest"
  publish
  exit 0
fi

# --- Unpack and configure ---------------------------------------------------------------------------
work="$cache_root/.$key.build"
rm -rf "$work"
mkdir -p "$work/src"
buildlog="$work/build.log"
start=$(date +%s)
log "building ($source_pkg $src_version) in $work; log: $buildlog"
tar -xJf "$tarball" -C "$work/src" --strip-components=1

mk=(make -C "$work/src" ARCH=x86_64 KBUILD_BUILD_USER=kiln KBUILD_BUILD_HOST=kiln)
KCONFIG_ALLCONFIG="$fragment" "${mk[@]}" -s allnoconfig >>"$buildlog" 2>&1 ||
  die "allnoconfig failed; see $buildlog"
"${mk[@]}" -s olddefconfig >>"$buildlog" 2>&1 || die "olddefconfig failed; see $buildlog"

# Every assignment in the fragment must be in .config as written. "# CONFIG_X is not set"
# means X must not be y or m.
dropped=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    opt=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
    got=$(grep -E "^$opt=" "$work/src/.config" | cut -d= -f2- || true)
    [ "$got" = "$want" ] || dropped+=("$opt=$want (got: ${got:-not set})")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    opt=${BASH_REMATCH[1]}
    got=$(grep -E "^$opt=" "$work/src/.config" | cut -d= -f2- || true)
    [ -z "$got" ] || dropped+=("$opt is not set (got: $got)")
  fi
done <"$fragment"
if ((${#dropped[@]})); then
  log "error: these options of ${fragment#"$repo"/} did not survive olddefconfig (unmet dependencies?):"
  printf '  %s\n' "${dropped[@]}" >&2
  exit 1
fi

# --- Build ---------------------------------------------------------------------------------------
log "configured; compiling with make -j$(nproc) (minutes)"
if ! "${mk[@]}" -j"$(nproc)" vmlinux bzImage >>"$buildlog" 2>&1; then
  tail -n 30 "$buildlog" >&2
  die "kernel build failed; full log: $buildlog"
fi

staging="$cache_root/.$key.out"
rm -rf "$staging"
mkdir -p "$staging"
cp "$work/src/vmlinux" "$staging/vmlinux"
cp "$work/src/arch/x86/boot/bzImage" "$staging/bzImage"
cp "$work/src/.config" "$staging/config"
cp "$buildlog" "$staging/build.log"
{
  echo "source: $source_pkg $src_version"
  echo "compiler: $cc_version"
  echo "fragment: ${fragment#"$repo"/}"
} >"$staging/INFO"
rm -rf "$dest"
mv "$staging" "$dest"
if [ "${KILN_KEEP_KERNEL_BUILD:-0}" = 1 ]; then
  log "build tree kept in $work"
else
  rm -rf "$work"
fi
log "built in $(($(date +%s) - start)) s: $dest ($(du -h "$dest/vmlinux" | cut -f1) vmlinux, $(du -h "$dest/bzImage" | cut -f1) bzImage)"
publish
