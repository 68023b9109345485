#!/bin/sh
# edgetype keyboard autocomplete as a service (busybox sh; also the ExecStart of edgetype.service).
#
#   /etc/init.d/S99edgetype start|stop|restart|status|check|run
#
# start: prepares the board (TPU module, USB host mode, /dev/cvi-tpu0, ION) and starts `run` in the
#        background. run: the supervisor in the foreground: starts the demo, restarts it when it
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

PYTHONPATH="$EDGETYPE_HOME/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH EDGETYPE_BUNDLE EDGETYPE_BACKEND

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
    if command -v "$EDGETYPE_PYTHON" >/dev/null 2>&1; then say "ok: $EDGETYPE_PYTHON"
    else say "missing: $EDGETYPE_PYTHON"; problems=$((problems + 1)); fi
    if "$EDGETYPE_PYTHON" -c 'import numpy' >/dev/null 2>&1; then say "ok: numpy"
    else say "missing: python3 numpy (stock buildroot images lack it)"; problems=$((problems + 1)); fi
    return "$problems"
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
    while [ "$stopping" = 0 ]; do
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
    check || say "starting anyway: the demo reports what it cannot do"
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
