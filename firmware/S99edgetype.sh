#!/bin/sh
# edgetype keyboard autocomplete as a service (busybox sh; also the ExecStart of edgetype.service).
#
#   /etc/init.d/S99edgetype start|stop|restart|status|check|run
#
# start: prepares the board (TPU module, USB host mode, /dev/cvi-tpu0, ION) and starts `run` in the
#        background. run: the supervisor in the foreground: before each start it checks what the
#        demo needs (preflight: python3 >= EDGETYPE_MIN_PYTHON, numpy, cffi and the TPU device and
#        ION for the tpu backend, the bundle, a keyboard); when something is missing it logs ONE
#        line saying what and how to add it on this image (EDGETYPE_ADD_* from
#        /etc/default/edgetype, written by firmware/images.py) and waits, re-checking with the same
#        backoff, without starting the demo. It starts the demo, restarts it when it
#        exits (backoff 1 s doubling to EDGETYPE_BACKOFF_MAX_S, reset after a run of 60 s); on TERM
#        or INT it sends TERM to the demo and waits for it (a killed process holding ION would make
#        the next model load fail with "ion ioctl fail:: Out of memory"), KILL after
#        EDGETYPE_STOP_TIMEOUT_S. stop: TERM to the supervisor, wait. check: report what is missing.
# Settings: /etc/default/edgetype (sourced); every path can also come from the environment.

: "${EDGETYPE_DEFAULTS:=/etc/default/edgetype}"
# shellcheck source=/dev/null # written by firmware/overlay.py; may be edited on the board
[ -r "$EDGETYPE_DEFAULTS" ] && . "$EDGETYPE_DEFAULTS"

: "${EDGETYPE_HOME:=/opt/edgetype}"
: "${EDGETYPE_BUNDLE:=$EDGETYPE_HOME/bundle}"
: "${EDGETYPE_BACKEND:=tpu}"
: "${EDGETYPE_PYTHON:=python3}"
: "${EDGETYPE_DEMO_CMD:=$EDGETYPE_PYTHON -m runtime.cli demo --bundle $EDGETYPE_BUNDLE --backend $EDGETYPE_BACKEND}"
: "${EDGETYPE_TPU_MODULE_DIR:=/mnt/system/ko}"
: "${EDGETYPE_TPU_DEV:=/dev/cvi-tpu0}"
: "${EDGETYPE_ION_DIR:=/sys/kernel/debug/ion/cvi_carveout_heap_dump}"
: "${EDGETYPE_USB_HOST:=1}"
: "${EDGETYPE_OTG_ROLE:=/proc/cviusb/otg_role}"
: "${EDGETYPE_MNT_SYSTEM:=/mnt/system}"
: "${EDGETYPE_PIDFILE:=/var/run/edgetype.pid}"
: "${EDGETYPE_LOG:=/var/log/edgetype.log}"
: "${EDGETYPE_BACKOFF_MAX_S:=60}"
: "${EDGETYPE_STOP_TIMEOUT_S:=10}"
: "${EDGETYPE_MAX_RESTARTS:=0}"  # 0: restart forever
: "${EDGETYPE_MIN_PYTHON:=3.9}"
: "${EDGETYPE_ION_DEV:=/dev/ion}"
: "${EDGETYPE_IMAGE:=unknown}"
# how to add a missing package on this image (the overlay's /etc/default/edgetype says it exactly)
: "${EDGETYPE_ADD_NUMPY:=buildroot: BR2_PACKAGE_PYTHON_NUMPY=y; Debian: apt-get install python3-numpy}"
: "${EDGETYPE_ADD_CFFI:=buildroot: BR2_PACKAGE_PYTHON_CFFI=y; Debian: apt-get install python3-cffi}"
: "${EDGETYPE_ADD_EVDEV:=buildroot: BR2_PACKAGE_PYTHON_EVDEV=y; Debian: apt-get install python3-evdev}"
# exits 0 when a keyboard is attached (keyboard_ui/devices.py: EV_KEY with KEY_A..KEY_Z)
: "${EDGETYPE_KEYBOARD_CHECK:=$EDGETYPE_PYTHON -m runtime.cli demo --list-keyboards --json | grep -q '\"keyboard\": true'}"

PYTHONPATH="$EDGETYPE_HOME/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH EDGETYPE_BUNDLE EDGETYPE_BACKEND EDGETYPE_ADD_NUMPY EDGETYPE_ADD_CFFI EDGETYPE_ADD_EVDEV

say() { echo "edgetype: $*"; }

load_tpu_module() {
    [ -e "$EDGETYPE_TPU_DEV" ] && return 0
    for ko in "$EDGETYPE_TPU_MODULE_DIR"/cv18*_tpu.ko; do
        [ -e "$ko" ] || continue
        name=$(basename "$ko" .ko)
        if grep -q "^$name " /proc/modules 2>/dev/null; then
            return 0
        fi
        say "loading $ko"
        insmod "$ko" || say "insmod $ko failed"
        return 0
    done
    say "no TPU kernel module in $EDGETYPE_TPU_MODULE_DIR"
}

usb_host_mode() {
    [ "$EDGETYPE_USB_HOST" = 1 ] || return 0
    [ -e "$EDGETYPE_OTG_ROLE" ] || return 0
    role=$(cat "$EDGETYPE_OTG_ROLE" 2>/dev/null)
    [ "$role" = host ] && return 0
    say "switching USB to host mode (was: ${role:-unknown})"
    echo host > "$EDGETYPE_OTG_ROLE" 2>/dev/null || say "cannot write $EDGETYPE_OTG_ROLE"
    # make it stick across reboots, as the Milk-V docs do
    if [ -e "$EDGETYPE_MNT_SYSTEM/usb-host.sh" ]; then
        ln -sf "$EDGETYPE_MNT_SYSTEM/usb-host.sh" "$EDGETYPE_MNT_SYSTEM/usb.sh"
    fi
}

check() {
    problems=0
    if [ -e "$EDGETYPE_TPU_DEV" ]; then say "ok: $EDGETYPE_TPU_DEV"
    else say "missing: $EDGETYPE_TPU_DEV (TPU driver not loaded)"; problems=$((problems + 1)); fi
    if [ -e /dev/ion ]; then say "ok: /dev/ion"
    else say "missing: /dev/ion"; problems=$((problems + 1)); fi
    if [ ! -d "$EDGETYPE_ION_DIR" ] && [ -d /sys/kernel/debug ] && ! grep -q debugfs /proc/mounts 2>/dev/null; then
        mount -t debugfs none /sys/kernel/debug 2>/dev/null
    fi
    if [ -r "$EDGETYPE_ION_DIR/summary" ]; then
        say "ION: $(head -n 3 "$EDGETYPE_ION_DIR/summary" | tr '\n' ' ')"
    else
        say "note: no ION summary at $EDGETYPE_ION_DIR (debugfs not mounted?)"
    fi
    if [ -f "$EDGETYPE_BUNDLE/manifest.json" ]; then say "ok: bundle $EDGETYPE_BUNDLE"
    else say "missing: bundle $EDGETYPE_BUNDLE/manifest.json"; problems=$((problems + 1)); fi
    line=$(python_problem)
    if [ -n "$line" ]; then say "missing: $line"; problems=$((problems + 1))
    else say "ok: $EDGETYPE_PYTHON $(python_facts | tr '\n' ' ')"; fi
    evdev_note
    line=$(keyboard_problem)
    if [ -n "$line" ]; then say "missing: $line"; problems=$((problems + 1))
    else say "ok: keyboard"; fi
    return "$problems"
}

# ---- what the demo needs: each *_problem prints one line when something is missing, else nothing
python_facts() {  # one interpreter start: "MAJOR.MINOR" then the importable packages, one a line
    "$EDGETYPE_PYTHON" -c 'import sys
print("%d.%d" % sys.version_info[:2])
for name in ("numpy", "cffi", "evdev"):
    try:
        __import__(name)
        print(name)
    except Exception:
        pass' 2>/dev/null
}

version_at_least() {  # version_at_least 3.9 3.10 -> false
    [ -n "$1" ] || return 1
    have_major=${1%%.*}; have_minor=${1#*.}; need_major=${2%%.*}; need_minor=${2#*.}
    [ "$have_major" -gt "$need_major" ] 2>/dev/null && return 0
    [ "$have_major" -eq "$need_major" ] 2>/dev/null && [ "$have_minor" -ge "$need_minor" ] 2>/dev/null
}

python_problem() {
    if ! command -v "$EDGETYPE_PYTHON" >/dev/null 2>&1; then
        echo "no $EDGETYPE_PYTHON on this image: edgetype needs Python >= $EDGETYPE_MIN_PYTHON"
        return
    fi
    facts=$(python_facts)
    version=$(echo "$facts" | head -n 1)
    if ! version_at_least "$version" "$EDGETYPE_MIN_PYTHON"; then
        echo "$EDGETYPE_PYTHON is Python ${version:-unknown}: edgetype needs >= $EDGETYPE_MIN_PYTHON"
        return
    fi
    if ! echo "$facts" | grep -qx numpy; then
        echo "numpy missing for $EDGETYPE_PYTHON (the model runs on it): $EDGETYPE_ADD_NUMPY"
        return
    fi
    if [ "$EDGETYPE_BACKEND" = tpu ] && ! echo "$facts" | grep -qx cffi; then
        echo "cffi missing for $EDGETYPE_PYTHON (the TPU driver needs it): $EDGETYPE_ADD_CFFI; or set EDGETYPE_BACKEND=numpy in $EDGETYPE_DEFAULTS"
    fi
}

device_problem() {
    [ "$EDGETYPE_BACKEND" = tpu ] || return 0
    if [ ! -e "$EDGETYPE_TPU_DEV" ]; then
        echo "no $EDGETYPE_TPU_DEV (TPU driver not loaded: no cv18*_tpu.ko in $EDGETYPE_TPU_MODULE_DIR, or this image has no TPU driver); or set EDGETYPE_BACKEND=numpy in $EDGETYPE_DEFAULTS"
    elif [ ! -e "$EDGETYPE_ION_DEV" ]; then
        echo "no $EDGETYPE_ION_DEV (ION allocator): the TPU needs the vendor kernel's ION carve-out; or set EDGETYPE_BACKEND=numpy in $EDGETYPE_DEFAULTS"
    fi
}

bundle_problem() {
    [ -f "$EDGETYPE_BUNDLE/manifest.json" ] && return 0
    echo "no model bundle at $EDGETYPE_BUNDLE (manifest.json missing): copy one there (edgetype firmware overlay --bundle DIR, or the SD card)"
}

keyboard_problem() {
    eval "$EDGETYPE_KEYBOARD_CHECK" >/dev/null 2>&1 && return 0
    if [ ! -d /dev/input ]; then
        echo "no keyboard: no /dev/input on this kernel (needs CONFIG_INPUT_EVDEV; the Duo V1 kernel has none): plug a USB keyboard into a kernel with evdev"
    else
        echo "no keyboard attached: plug in a USB keyboard (USB host mode: $EDGETYPE_OTG_ROLE)"
    fi
}

preflight() {  # prints the first problem (one line) and fails, or succeeds silently
    for what in python_problem bundle_problem device_problem keyboard_problem; do
        line=$($what)
        if [ -n "$line" ]; then
            echo "$line"
            return 1
        fi
    done
    return 0
}

evdev_note() {
    if ! python_facts | grep -qx evdev; then
        say "note: no python-evdev: the demo reads the keyboard with the standard-library reader (python-evdev: $EDGETYPE_ADD_EVDEV)"
    fi
}

child=""
stopping=0

stop_child() {
    stopping=1
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        waited=0
        while kill -0 "$child" 2>/dev/null && [ "$waited" -lt "$EDGETYPE_STOP_TIMEOUT_S" ]; do
            sleep 1
            waited=$((waited + 1))
        done
        if kill -0 "$child" 2>/dev/null; then
            say "demo ignored TERM for ${EDGETYPE_STOP_TIMEOUT_S} s: KILL (its ION may stay held)"
            kill -KILL "$child" 2>/dev/null
        fi
        wait "$child" 2>/dev/null
    fi
    say "supervisor stopped"
    exit 0
}

supervise() {
    trap stop_child TERM INT
    backoff=1
    restarts=0
    waiting_for=""
    while [ "$stopping" = 0 ]; do
        if ! problem=$(preflight); then
            # a missing dependency waits: the line once (again only when it changes), re-checked
            # with backoff; the demo is not started, so no restart loop
            if [ "$problem" != "$waiting_for" ]; then
                say "waiting: $problem (checking again with backoff up to ${EDGETYPE_BACKOFF_MAX_S} s)"
                waiting_for=$problem
            fi
            sleep "$backoff" &
            wait $!
            backoff=$((backoff * 2))
            [ "$backoff" -gt "$EDGETYPE_BACKOFF_MAX_S" ] && backoff=$EDGETYPE_BACKOFF_MAX_S
            continue
        fi
        if [ -n "$waiting_for" ]; then
            say "ready: nothing missing any more"
            waiting_for=""
            backoff=1
        fi
        started=$(date +%s)
        say "starting: $EDGETYPE_DEMO_CMD"
        # a shell command line (quotes allowed); exec: $! is the demo itself, TERM reaches it
        eval "exec $EDGETYPE_DEMO_CMD" &
        child=$!
        wait "$child"
        status=$?
        child=""
        [ "$stopping" = 1 ] && break
        ran=$(( $(date +%s) - started ))
        restarts=$((restarts + 1))
        if [ "$EDGETYPE_MAX_RESTARTS" -gt 0 ] && [ "$restarts" -gt "$EDGETYPE_MAX_RESTARTS" ]; then
            say "demo exited $status; gave up after $EDGETYPE_MAX_RESTARTS restarts"
            return 1
        fi
        [ "$ran" -ge 60 ] && backoff=1
        say "demo exited $status after ${ran} s; restart $restarts in ${backoff} s"
        sleep "$backoff" &
        wait $!  # interruptible: TERM during the backoff stops at once
        backoff=$((backoff * 2))
        [ "$backoff" -gt "$EDGETYPE_BACKOFF_MAX_S" ] && backoff=$EDGETYPE_BACKOFF_MAX_S
    done
}

prepare() {
    load_tpu_module
    usb_host_mode
    say "image $EDGETYPE_IMAGE, backend $EDGETYPE_BACKEND"
    if problem=$(preflight); then
        evdev_note
    else
        say "waiting: $problem"  # on the console at boot; the supervisor waits and re-checks
    fi
}

case "${1:-}" in
    start)
        if [ -f "$EDGETYPE_PIDFILE" ] && kill -0 "$(cat "$EDGETYPE_PIDFILE")" 2>/dev/null; then
            say "already running (pid $(cat "$EDGETYPE_PIDFILE"))"
            exit 0
        fi
        prepare
        EDGETYPE_PREPARED=1 "$0" run >> "$EDGETYPE_LOG" 2>&1 < /dev/null &
        echo $! > "$EDGETYPE_PIDFILE"
        say "started (pid $!, log $EDGETYPE_LOG)"
        ;;
    stop)
        if [ -f "$EDGETYPE_PIDFILE" ]; then
            pid=$(cat "$EDGETYPE_PIDFILE")
            kill -TERM "$pid" 2>/dev/null
            waited=0
            limit=$((EDGETYPE_STOP_TIMEOUT_S + 5))
            while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$limit" ]; do
                sleep 1
                waited=$((waited + 1))
            done
            rm -f "$EDGETYPE_PIDFILE"
        fi
        say "stopped"
        ;;
    restart)
        "$0" stop
        "$0" start
        ;;
    status)
        if [ -f "$EDGETYPE_PIDFILE" ] && kill -0 "$(cat "$EDGETYPE_PIDFILE")" 2>/dev/null; then
            say "running (pid $(cat "$EDGETYPE_PIDFILE"))"
        else
            say "not running"
            exit 3
        fi
        ;;
    check)
        check
        exit $?
        ;;
    run)
        [ "${EDGETYPE_PREPARED:-0}" = 1 ] || prepare
        supervise
        ;;
    *)
        echo "usage: $0 start|stop|restart|status|check|run" >&2
        exit 2
        ;;
esac
