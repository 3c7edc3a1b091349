#!/usr/bin/env bash
# Run a real libvirtd (QEMU driver) for phbguard's end-to-end tests on a bare
# Debian 12 machine: as root, without systemd, D-Bus or KVM (pSeries guests run
# under TCG).
#
# Usage: tests/e2e/libvirtd-sandbox.sh install|start|stop|restart|restart-daemon|status
#
#   install  install the Debian packages (apt is skipped when they are all
#            present), create the libvirt-qemu user and kvm group, write
#            /etc/libvirt/qemu.conf, create /etc/libvirt/hooks/qemu.d
#   start    start virtlogd and libvirtd (daemonised, pid files, config and
#            log in $STATE_DIR), wait until the QEMU driver answers
#   stop     destroy and undefine the domains named phbguard-e2e-*, stop
#            libvirtd and virtlogd (SIGTERM, then SIGKILL after a bounded wait)
#   restart  stop + start (libvirt discovers hooks only when it starts)
#   restart-daemon
#            stop libvirtd only (SIGTERM) and start it again, leaving running
#            guests running, as 'systemctl restart libvirtd' does: the new
#            daemon reconnects to them and calls each hook with 'reconnect begin'
#   status   exit 0 when qemu:///system answers
#
# Environment:
#   PHBGUARD_E2E_STATE_DIR      default /run/phbguard-e2e
#   PHBGUARD_E2E_START_TIMEOUT  seconds to wait for the daemon, default 30
#   PHBGUARD_E2E_STOP_TIMEOUT   seconds before SIGKILL, default 15
#   PHBGUARD_E2E_LOG_FILTERS    libvirtd log_filters, default logs hook and
#                               child-process calls (argv, exit status, stderr)
#
# Fixed by libvirt, not configurable here: hooks are read from
# /etc/libvirt/hooks/qemu.d (compiled in), the client socket is
# /run/libvirt/libvirt-sock, domain state is in /run/libvirt/qemu and
# /var/lib/libvirt/qemu, guest logs in /var/log/libvirt/qemu/NAME.log.
set -euo pipefail

STATE_DIR=${PHBGUARD_E2E_STATE_DIR:-/run/phbguard-e2e}
START_TIMEOUT=${PHBGUARD_E2E_START_TIMEOUT:-30}
STOP_TIMEOUT=${PHBGUARD_E2E_STOP_TIMEOUT:-15}
LOG_FILTERS=${PHBGUARD_E2E_LOG_FILTERS:-1:util.hook 1:util.command}

URI=qemu:///system
DOMAIN_PREFIX=phbguard-e2e-
HOOK_DIR=/etc/libvirt/hooks/qemu.d
QEMU_CONF=/etc/libvirt/qemu.conf
PACKAGES=(
    libvirt-daemon
    libvirt-daemon-driver-qemu
    libvirt-clients
    qemu-system-ppc
    libvirt-dev
    pkg-config
)

LIBVIRTD_CONF=$STATE_DIR/libvirtd.conf
LIBVIRTD_PID=$STATE_DIR/libvirtd.pid
LIBVIRTD_LOG=$STATE_DIR/libvirtd.log
VIRTLOGD_CONF=$STATE_DIR/virtlogd.conf
VIRTLOGD_PID=$STATE_DIR/virtlogd.pid
VIRTLOGD_LOG=$STATE_DIR/virtlogd.log

log() { printf 'libvirtd-sandbox: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root"
}

# virsh with a bound on its run time; never hangs the caller.
vsh() {
    timeout 60 virsh -q -c "$URI" "$@"
}

# Write $2 to file $1 only when the content differs (keeps mtimes stable).
write_if_changed() {
    local file=$1 content=$2
    if [[ -f $file ]] && [[ $(<"$file") == "$content" ]]; then
        return 0
    fi
    printf '%s\n' "$content" >"$file.tmp.$$"
    mv -f "$file.tmp.$$" "$file"
}

# ---------------------------------------------------------------- install --

missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

cmd_install() {
    need_root
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
    else
        log "installing: ${missing[*]}"
        apt_lists_present || apt-get update -q
        if ! apt_install "${missing[@]}"; then
            # stale package lists (404s) are the usual cause; refresh once
            apt-get update -q
            apt_install "${missing[@]}"
        fi
    fi

    # The QEMU driver looks its compiled-in default user/group up before it
    # reads qemu.conf; libvirt-daemon-system would create them, we don't use it.
    getent group kvm >/dev/null || groupadd -r kvm
    getent passwd libvirt-qemu >/dev/null ||
        useradd -r -M -s /usr/sbin/nologin libvirt-qemu

    mkdir -p /etc/libvirt "$HOOK_DIR" /var/log/libvirt/qemu
    write_if_changed "$QEMU_CONF" "# written by phbguard tests/e2e/libvirtd-sandbox.sh
security_driver = \"none\"
cgroup_controllers = [ ]
user = \"root\"
group = \"root\"
stdio_handler = \"file\""
    log "install done"
}

# ------------------------------------------------------------------ start --

# True if process $1 exists and is not a zombie: PID 1 of a container or
# micro-VM may reap orphans late, and kill -0 succeeds on zombies.
proc_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ $stat != [ZX]* ]]
}

# Print the pid from pid file $1 if that process is alive and is $2.
live_pid() {
    local file=$1 comm=$2 pid
    [[ -f $file ]] || return 1
    pid=$(<"$file") || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    printf '%s\n' "$pid"
}

daemon_answers() {
    timeout 10 virsh -q -c "$URI" list --all --name >/dev/null 2>&1
}

write_configs() {
    write_if_changed "$LIBVIRTD_CONF" "# generated by phbguard tests/e2e/libvirtd-sandbox.sh
log_level = 3
log_filters = \"$LOG_FILTERS\"
log_outputs = \"1:file:$LIBVIRTD_LOG\"
auth_unix_ro = \"none\"
auth_unix_rw = \"none\""
    write_if_changed "$VIRTLOGD_CONF" "# generated by phbguard tests/e2e/libvirtd-sandbox.sh
log_outputs = \"3:file:$VIRTLOGD_LOG\""
}

# Runs a daemon that forks into the background without the descriptors this script inherited.
# Everyone starts this daemon under `flock /tmp/phbguard-libvirtd.lock`; a daemon that kept
# flock's descriptor would hold the shared lock for as long as it lives (seen here: every
# other engineer's e2e run waited on a libvirtd started by a test under the lock). bash marks
# its own script descriptor (255) close-on-exec, so closing the rest before exec is safe.
detached() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if ((fd > 2 && fd < 255)); then
                eval "exec $fd>&-"
            fi
        done
        exec "$@"
    )
}

cmd_start() {
    need_root
    local bin
    for bin in libvirtd virtlogd virsh qemu-system-ppc64; do
        command -v "$bin" >/dev/null || die "$bin not found; run '$0 install' first"
    done
    [[ -f $QEMU_CONF ]] || die "$QEMU_CONF missing; run '$0 install' first"

    # Hooks are discovered when the daemon starts: the directory must exist
    # (and the hooks be in it) before libvirtd is launched.
    mkdir -p "$STATE_DIR" "$HOOK_DIR" /var/log/libvirt/qemu
    write_configs

    if ! live_pid "$VIRTLOGD_PID" virtlogd >/dev/null; then
        rm -f "$VIRTLOGD_PID"
        detached virtlogd -d -f "$VIRTLOGD_CONF" -p "$VIRTLOGD_PID" ||
            die "virtlogd failed to start (see $VIRTLOGD_LOG)"
    fi

    if live_pid "$LIBVIRTD_PID" libvirtd >/dev/null; then
        log "libvirtd already running (pid $(<"$LIBVIRTD_PID"))"
    else
        # libvirtd itself replaces stale sockets under /run/libvirt; a stale
        # pid file of ours is simply removed.
        rm -f "$LIBVIRTD_PID"
        detached libvirtd -d -f "$LIBVIRTD_CONF" -p "$LIBVIRTD_PID" ||
            die "libvirtd failed to start (see $LIBVIRTD_LOG)"
    fi

    # 'virsh version' can't be the probe: it fails on hosts without an
    # emulator for the host arch ("Cannot find suitable emulator for x86_64").
    local deadline=$((SECONDS + START_TIMEOUT))
    until daemon_answers; do
        if ((SECONDS >= deadline)); then
            log "libvirtd log tail ($LIBVIRTD_LOG):"
            tail -n 20 "$LIBVIRTD_LOG" >&2 || true
            die "libvirtd did not answer on $URI within ${START_TIMEOUT}s"
        fi
        if ! live_pid "$LIBVIRTD_PID" libvirtd >/dev/null; then
            tail -n 20 "$LIBVIRTD_LOG" >&2 || true
            die "libvirtd exited during start-up (see $LIBVIRTD_LOG)"
        fi
        sleep 0.5
    done
    log "libvirtd running (pid $(<"$LIBVIRTD_PID")), log $LIBVIRTD_LOG"
}

# ------------------------------------------------------------------- stop --

cleanup_domains() {
    local name names
    names=$(vsh list --all --name 2>/dev/null) || return 0
    while IFS= read -r name; do
        [[ $name == "$DOMAIN_PREFIX"* ]] || continue
        vsh destroy "$name" >/dev/null 2>&1 || true
        vsh undefine --managed-save --snapshots-metadata "$name" >/dev/null 2>&1 ||
            vsh undefine "$name" >/dev/null 2>&1 || true
        log "removed domain $name"
    done <<<"$names"
}

# QEMU processes of our domains that outlived a dead daemon (e.g. after a
# SIGKILL). Their status files go too, so that the next libvirtd start sees
# the domains as shut off instead of reconnecting; the next 'stop' with a
# running daemon undefines them.
kill_orphan_guests() {
    local file pid
    for file in /run/libvirt/qemu/"$DOMAIN_PREFIX"*.pid; do
        [[ -f $file ]] || continue
        # comm is truncated to 15 characters: qemu-system-ppc64 -> qemu-system-ppc
        if pid=$(live_pid "$file" qemu-system-ppc); then
            kill -KILL "$pid" 2>/dev/null || true
            log "killed orphan guest process $pid ($file)"
        fi
        rm -f "$file" "${file%.pid}.xml"
    done
}

# stop_daemon PIDFILE COMM
stop_daemon() {
    local file=$1 comm=$2 pid deadline
    if pid=$(live_pid "$file" "$comm"); then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + STOP_TIMEOUT))
        while proc_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if proc_alive "$pid"; then
            log "$comm (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        log "$comm stopped"
    fi
    rm -f "$file"
}

cmd_stop() {
    need_root
    if daemon_answers; then
        cleanup_domains
    fi
    stop_daemon "$LIBVIRTD_PID" libvirtd
    if ! daemon_answers; then
        kill_orphan_guests
    fi
    stop_daemon "$VIRTLOGD_PID" virtlogd
}

cmd_status() {
    if daemon_answers; then
        echo "libvirtd answers on $URI"
    else
        echo "libvirtd does not answer on $URI"
        return 1
    fi
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
restart-daemon) need_root && stop_daemon "$LIBVIRTD_PID" libvirtd && cmd_start ;;
status) cmd_status ;;
*) usage ;;
esac
