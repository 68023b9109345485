#!/usr/bin/env bash
# Run edgetype's TPU-free board code paths on a riscv64 Debian trixie user space under qemu-user.
#
#   ci/riscv64.sh [--bundle DIR] [--rootfs-only] [--json]
#
# 1. Builds (once; cached under $EDGETYPE_CACHE or ~/.cache/edgetype, keyed by a hash of the
#    package list) a riscv64 root file system from the Debian registry: `debootstrap --foreign`
#    downloads and unpacks the base, every other .deb is extracted with dpkg-deb (no postinst runs
#    under --foreign, so the libblas.so.3/liblapack.so.3 alternatives are made by hand as relative
#    symlinks). Installs debootstrap/qemu-user-static with apt-get when missing (CI runs as root).
# 2. Copies our on-board packages (runtime/ tpu_driver/ kv_window/ keyboard_ui/ board_tests/onboard)
#    and a bundle into ROOTFS/opt/edgetype, like firmware/ lays them out on a board.
# 3. Runs board_tests/onboard/riscv64_smoke.py under qemu-riscv64-static (bundle loading and
#    checks, the numpy backend on the golden sequence, the KV window, the keymap) and the same
#    script with the host's python, then compares the two JSON reports (board_tests/riscv64.py).
# Exit 0 only when every check passed on riscv64 and agrees with x86.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=trixie
arch=riscv64
packages="python3,python3-numpy,python3-cffi"
mirror=${EDGETYPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${EDGETYPE_CACHE:-$HOME/.cache/edgetype}
build_timeout_s=${EDGETYPE_ROOTFS_TIMEOUT_S:-1200}
host_python=${EDGETYPE_HOST_PYTHON:-$repo/.venv/bin/python}
bundle=""
rootfs_only=0
json=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) bundle=$2; shift 2 ;;
        --rootfs-only) rootfs_only=1; shift ;;
        --json) json=1; shift ;;
        *) echo "riscv64.sh: unknown argument $1 (see the header of ci/riscv64.sh)" >&2; exit 2 ;;
    esac
done
log() { echo "riscv64.sh: $*" >&2; }

key=$(printf '%s %s %s format-1\n' "$suite" "$arch" "$packages" | sha256sum | cut -c1-12)
rootfs=$cache/rootfs-$arch-$suite-$key

need_tools() {
    local missing=()
    command -v qemu-riscv64-static >/dev/null || missing+=(qemu-user-static)
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    command -v dpkg-deb >/dev/null || missing+=(dpkg)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ]; then
            log "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
            exit 2
        fi
        log "installing ${missing[*]} from the Debian registry"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

build_rootfs() {
    local tmp=$rootfs.tmp.$$ start=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$cache"
    log "building $rootfs (debootstrap --foreign $suite $arch + $packages; bounded to ${build_timeout_s} s)"
    # --foreign: download and unpack only; the second stage would need to run riscv64 code as root.
    if ! timeout "$build_timeout_s" /usr/sbin/debootstrap --foreign --arch="$arch" --variant=minbase \
            --include="$packages" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
        tail -5 "$tmp.log" >&2
        log "debootstrap failed or took over ${build_timeout_s} s (log: $tmp.log)"
        exit 1
    fi
    local n=0
    for deb in "$tmp"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$tmp"
        n=$((n + 1))
    done
    # No postinst ran: make the alternatives numpy needs, relative so they resolve under -L too.
    local libdir=$tmp/usr/lib/riscv64-linux-gnu
    for lib in libblas.so.3 liblapack.so.3; do
        local target
        target=$(cd "$libdir" && find . -path "*/$lib" -not -path "./$lib" | sort | head -1)
        [ -n "$target" ] || { log "no $lib in the rootfs"; exit 1; }
        ln -sfn "${target#./}" "$libdir/$lib"
    done
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    printf '%s\n' "$packages" > "$tmp/.edgetype-packages"
    mv "$tmp" "$rootfs"
    rm -f "$tmp.log"
    log "rootfs built: $n packages extracted in $((SECONDS - start)) s ($(du -sh "$rootfs" | cut -f1))"
}

need_tools
if [ ! -f "$rootfs/.edgetype-packages" ]; then
    build_rootfs
else
    log "using cached $rootfs"
fi
python_rv=$(ls "$rootfs"/usr/bin/python3.[0-9]* 2>/dev/null | grep -E 'python3\.[0-9]+$' | head -1)
[ -n "$python_rv" ] || { log "no python3 in $rootfs"; exit 1; }
if [ "$rootfs_only" = 1 ]; then
    qemu-riscv64-static -L "$rootfs" "$python_rv" -c \
        'import platform, sys, numpy, cffi; print(platform.machine(), sys.version.split()[0], "numpy", numpy.__version__, "cffi", cffi.__version__)'
    exit 0
fi

# ---- install our on-board packages and a bundle, as firmware/ lays them out on a board
opt=$rootfs/opt/edgetype
rm -rf "$opt"
mkdir -p "$opt/lib/board_tests"
for pkg in runtime tpu_driver kv_window keyboard_ui; do
    [ -d "$repo/$pkg" ] || { log "package $pkg missing in $repo"; exit 1; }
    cp -r "$repo/$pkg" "$opt/lib/$pkg"
done
cp "$repo/board_tests/__init__.py" "$opt/lib/board_tests/"
cp -r "$repo/board_tests/onboard" "$opt/lib/board_tests/onboard"
find "$opt" -name __pycache__ -prune -exec rm -rf {} +
if [ -z "$bundle" ]; then
    bundle=$(ls -d "$repo"/models/bundles/*/ 2>/dev/null | head -1)
fi
[ -n "$bundle" ] && [ -f "$bundle/manifest.json" ] || {
    log "no bundle: pass --bundle DIR (a models/bundles/<chip>-<quant>-w128 directory)"; exit 2; }
cp -r "$bundle" "$opt/bundle"

# ---- run the same smoke script on riscv64 (qemu) and on x86, compare
out=$(mktemp -d)
start=$SECONDS
log "running board_tests/onboard/riscv64_smoke.py under qemu-riscv64-static ($(basename "$python_rv"))"
rv_rc=0
PYTHONPATH=/opt/edgetype/lib PYTHONDONTWRITEBYTECODE=1 \
    timeout 900 qemu-riscv64-static -L "$rootfs" "$python_rv" \
    "$opt/lib/board_tests/onboard/riscv64_smoke.py" --bundle "$opt/bundle" \
    >"$out/riscv64.json" || rv_rc=$?
log "riscv64 run: exit $rv_rc in $((SECONDS - start)) s"
PYTHONPATH="$repo" "$host_python" "$repo/board_tests/onboard/riscv64_smoke.py" --bundle "$bundle" \
    >"$out/x86.json"
PYTHONPATH="$repo" "$host_python" -m board_tests.riscv64 compare "$out/riscv64.json" "$out/x86.json" \
    $([ "$json" = 1 ] && echo --json)
