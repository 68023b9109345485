#!/usr/bin/env bash
# Run edgetype's TPU-free board code paths on a riscv64 Debian trixie user space under qemu-user.
#
#   ci/riscv64.sh [--bundle DIR] [--rootfs-only] [--layout] [--replay FILE.jsonl] [--json]
#
# 1. Builds (once; cached under $EDGETYPE_CACHE or ~/.cache/edgetype, keyed by a hash of the
#    package list) a riscv64 root file system from the Debian registry: `debootstrap --foreign`
#    downloads and unpacks the base, every other .deb is extracted with dpkg-deb (no postinst runs
#    under --foreign, so the libblas.so.3/liblapack.so.3 alternatives are made by hand as relative
#    symlinks). Installs debootstrap/qemu-user-static with apt-get when missing (CI runs as root).
# 2. Extracts the firmware overlay (`edgetype firmware overlay --image debian`: the tarball a board
#    gets) into ROOTFS and copies a bundle to ROOTFS/opt/edgetype/bundle. Everything below runs
#    the overlay's tree with `python3 -I` (only /opt/edgetype/lib added to sys.path; the rootfs's
#    python3-numpy and python3-cffi are the image's packages).
#    --layout: print the stdlib evdev reader's struct sizes and ioctl numbers on riscv64 (JSON).
#    --replay FILE: the overlay's `demo --replay FILE` (numpy backend) on riscv64 and on x86;
#    prints both; exit 0 only when text and suggestions are identical.
# 3. Otherwise runs board_tests/onboard/riscv64_smoke.py under qemu-riscv64-static (bundle loading and
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
layout=0
replay=""
# `python3 -m MODULE` with sys.path = [the overlay's lib] + the interpreter's own (run under -I)
bootstrap="import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); module = sys.argv.pop(1); sys.argv[0] = module; runpy.run_module(module, run_name='__main__', alter_sys=True)"
while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) bundle=$2; shift 2 ;;
        --rootfs-only) rootfs_only=1; shift ;;
        --layout) layout=1; shift ;;
        --replay) replay=$(realpath "$2"); shift 2 ;;
        --json) json=1; shift ;;
        *) echo "riscv64.sh: unknown argument $1 (see the header of ci/riscv64.sh)" >&2; exit 2 ;;
    esac
done
log() { echo "riscv64.sh: $*" >&2; }
json_flag=()
[ "$json" = 1 ] && json_flag=(--json)

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
python_rv=""
for candidate in "$rootfs"/usr/bin/python3.[0-9]*; do
    [[ "$candidate" =~ python3\.[0-9]+$ ]] && { python_rv=$candidate; break; }
done
[ -n "$python_rv" ] || { log "no python3 in $rootfs"; exit 1; }
if [ "$rootfs_only" = 1 ]; then
    qemu-riscv64-static -L "$rootfs" "$python_rv" -c \
        'import platform, sys, numpy, cffi; print(platform.machine(), sys.version.split()[0], "numpy", numpy.__version__, "cffi", cffi.__version__)'
    exit 0
fi

# one run at a time installs into and runs from the cached rootfs's /opt/edgetype
exec 9>"$rootfs.lock"
flock 9

# ---- install the firmware overlay (the very tarball `edgetype firmware overlay` builds) and a
# bundle, as a board has them; the rootfs's own python3 + numpy + cffi stand for the debian image
opt=$rootfs/opt/edgetype
rm -rf "$opt"
tarball=$(mktemp --suffix=.tar.gz)
PYTHONPATH="$repo" "$host_python" -m runtime.cli firmware overlay --board duo256m --image debian \
    --no-bundle -o "$tarball" >&2
tar -xzf "$tarball" -C "$rootfs"
rm -f "$tarball"
[ -f "$opt/lib/runtime/cli.py" ] || { log "the overlay did not install $opt/lib"; exit 1; }
if [ "$layout" = 1 ]; then  # the stdlib evdev reader's struct sizes and ioctl numbers on riscv64
    qemu-riscv64-static -L "$rootfs" "$python_rv" -I -c "import json, sys; \
sys.path.insert(0, '/opt/edgetype/lib'); from keyboard_ui.evdev_stdlib import layout; \
print(json.dumps(layout(), sort_keys=True))"
    exit $?
fi
if [ -z "$bundle" ]; then
    for candidate in "$repo"/models/bundles/*/; do bundle=${candidate%/}; break; done
fi
if [ -z "$bundle" ] || [ ! -f "$bundle/manifest.json" ]; then
    log "no bundle: pass --bundle DIR (a models/bundles/<chip>-<quant>-w128 directory)"; exit 2
fi
cp -r "$bundle" "$opt/bundle"
out=$(mktemp -d)

if [ -n "$replay" ]; then
    # the overlay's `demo --replay` (numpy backend) on riscv64 and on x86, both isolated (-I): the
    # typed text and the suggestions must be identical
    cp "$replay" "$out/replay.jsonl"
    args=(demo --replay /tmp/edgetype-replay.jsonl --bundle /opt/edgetype/bundle --backend numpy
          --json --no-journal)
    mkdir -p "$rootfs/tmp" && cp "$replay" "$rootfs/tmp/edgetype-replay.jsonl"
    start=$SECONDS
    rv_rc=0
    timeout 1200 qemu-riscv64-static -L "$rootfs" "$python_rv" -I -c "$bootstrap" \
        /opt/edgetype/lib runtime.cli "${args[@]}" >"$out/riscv64.json" 2>"$out/riscv64.err" || rv_rc=$?
    log "riscv64 replay: exit $rv_rc in $((SECONDS - start)) s"
    [ "$rv_rc" = 0 ] || { tail -5 "$out/riscv64.err" >&2; exit 1; }
    x86_args=(demo --replay "$replay" --bundle "$bundle" --backend numpy --json --no-journal)
    "$host_python" -I -c "$bootstrap" "$opt/lib" runtime.cli "${x86_args[@]}" \
        >"$out/x86.json" 2>"$out/x86.err" || { tail -5 "$out/x86.err" >&2; exit 1; }
    PYTHONPATH="$repo" "$host_python" -m board_tests.riscv64 compare-replay "$out/riscv64.json" \
        "$out/x86.json" "${json_flag[@]}"
    exit $?
fi

# ---- run the same smoke script on riscv64 (qemu) and on x86, compare
start=$SECONDS
log "running board_tests/onboard/riscv64_smoke.py under qemu-riscv64-static ($(basename "$python_rv"))"
rv_rc=0
PYTHONDONTWRITEBYTECODE=1 timeout 900 qemu-riscv64-static -L "$rootfs" "$python_rv" -I -c \
    "$bootstrap" /opt/edgetype/lib board_tests.onboard.riscv64_smoke --bundle /opt/edgetype/bundle \
    >"$out/riscv64.json" || rv_rc=$?
log "riscv64 run: exit $rv_rc in $((SECONDS - start)) s"
# x86: the same overlay tree (-I: not the checkout), this host's python and packages
PYTHONDONTWRITEBYTECODE=1 "$host_python" -I -c "$bootstrap" "$opt/lib" \
    board_tests.onboard.riscv64_smoke --bundle "$bundle" >"$out/x86.json"
PYTHONPATH="$repo" "$host_python" -m board_tests.riscv64 compare "$out/riscv64.json" "$out/x86.json" \
    "${json_flag[@]}"
