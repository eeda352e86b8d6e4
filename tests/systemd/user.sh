#!/usr/bin/env bash
# ggrokd.service (packaging/systemd/) under a real systemd user manager, with the real ggrokd:
# start returns when ggrokd is ready, the status line, ggrokctl through the socket in the runtime
# directory, reload (SIGHUP) applies an edit, the watchdog restarts a frozen daemon, stop, the
# structured log in `journalctl --user -u ggrokd`, and an invalid config is not restarted.
#
# Run as root by tests/tests/packaging/systemd.rs, which starts the ggrok-server it connects to:
#   GGROKD_BIN=… GGROKCTL_BIN=… SERVER_URL=ws://127.0.0.1:PORT TOKEN=… HOST_A=… HOST_B=… user.sh
#
# How: a user `ggrok-systemd-test` (created and deleted by this script), journald and
# `systemd --user` in a private mount namespace whose tmpfs /run/systemd holds the `system/`
# directory systemd checks for (never created on the host: every deb postinst would then call
# systemctl), in cgroups where logind would have put them (journald names the unit from that path).
# Everything lives in a temporary directory, removed on exit with the cgroups, mount and user.
. "$(dirname "$0")/lib.sh"

: "${GGROKD_BIN:?}" "${GGROKCTL_BIN:?}" "${SERVER_URL:?}" "${TOKEN:?}" "${HOST_A:?}" "${HOST_B:?}"
UNIT=$(readlink -f "${UNIT:-$(dirname "$0")/../../packaging/systemd/ggrokd.service}")
NAME=ggrok-systemd-test
require_host /usr/lib/systemd/systemd /usr/lib/systemd/systemd-journald systemctl journalctl
one_at_a_time user
clean_leftovers /tmp/ggrok-systemd-user.*

WORK=$(mktemp -d /tmp/ggrok-systemd-user.XXXXXX)
chmod 755 "$WORK"
NS=$WORK/mnt   # the mount namespace, kept in a file
HOME_DIR=$WORK/home

down() {
    if [ $? != 0 ] && [ -n "${UID_:-}" ]; then
        log "the journal, last lines:"
        nsenter --mount="$NS" journalctl -D "$WORK/journal" --no-pager -n 40 >&2 || true
    fi
    local uid
    uid=$(id -u "$NAME" 2>/dev/null) || uid=
    if [ -n "$uid" ] && alive "$WORK/manager.pid"; then
        timeout 10 runuser -u "$NAME" -- env XDG_RUNTIME_DIR="/run/user/$uid" systemctl --user exit >/dev/null 2>&1 || true
        wait_until 10 sh -c "! kill -0 $(pid_of "$WORK/manager.pid")" || true
    fi
    stop_pid "$WORK/manager.pid" 10
    stop_pid "$WORK/journald.pid" 10
    if [ -n "$uid" ]; then
        cg_remove "user.slice/user-$uid.slice"
        for h in $(cg_roots); do rmdir "$h/user.slice" 2>/dev/null || true; done
        rm -rf "/run/user/$uid"
    fi
    if [ -e "$WORK/made-run-user" ]; then rmdir /run/user 2>/dev/null || true; fi
    if findmnt -n "$NS" >/dev/null 2>&1; then umount "$NS"; fi
    userdel "$NAME" 2>/dev/null || true
    rm -rf "$WORK"
    log "user manager, journald, cgroups, mount namespace, user and $WORK removed"
}
[ -n "${KEEP:-}" ] || trap down EXIT   # KEEP=1: leave it all up, to look around; the next run removes it

# as_user CMD...: CMD as the test user, inside the namespace (where the journal is).
as_user() {
    nsenter --mount="$NS" setpriv --reuid="$UID_" --regid="$GID_" --init-groups \
        env -i HOME="$HOME_DIR" USER="$NAME" LOGNAME="$NAME" PATH=/usr/bin:/bin XDG_RUNTIME_DIR="$RT" LANG=C.UTF-8 "$@"
}
show() { as_user systemctl --user show -P "$1" ggrokd.service; }
status_has() { case "$(show StatusText)" in *"$1"*) ;; *) return 1 ;; esac; }
journal() { as_user journalctl --user -u ggrokd.service --no-pager "$@"; }
write_config() { as_user sh -c 'umask 077; cat >"$HOME/.config/ggrok/ggrokd.toml"'; }
tunnel() { printf '[[tunnel]]\nhost = "%s"\nlocal = "8080"\n' "$1"; }

up() {
    local h cgs="" uid
    if uid=$(id -u "$NAME" 2>/dev/null); then   # left by a killed run
        cg_remove "user.slice/user-$uid.slice"
        rm -rf "/run/user/$uid"
        userdel "$NAME"
    fi
    # Not a system user: journald gives only uids from 1000 a journal file of their own (journalctl --user).
    useradd --no-create-home --home-dir "$HOME_DIR" --shell /bin/sh --user-group "$NAME"
    UID_=$(id -u "$NAME") GID_=$(id -g "$NAME") RT=/run/user/$(id -u "$NAME")
    [ -d /run/user ] || {
        mkdir -m 755 /run/user
        touch "$WORK/made-run-user"
    }
    install -d -o "$NAME" -g "$NAME" -m 700 "$HOME_DIR" "$RT"
    # Copies, so that a build running meanwhile cannot change the binaries under the test.
    install -d "$WORK/bin"
    install -m 755 "$GGROKD_BIN" "$GGROKCTL_BIN" "$WORK/bin/"
    install -m 644 "$UNIT" "$WORK/ggrokd.service"
    for h in $(cg_roots); do
        mkdir -p "$h/user.slice/user-$UID_.slice/user@$UID_.service"
        chown -R "$NAME:" "$h/user.slice/user-$UID_.slice/user@$UID_.service"
        cgs="$cgs $h/user.slice/user-$UID_.slice/user@$UID_.service/cgroup.procs"
    done
    install -d -g systemd-journal -m 2755 "$WORK/journal"
    [ -d /run/systemd ] || mkdir /run/systemd
    touch "$NS"
    # /run/log on a tmpfs: journald deletes its runtime journal after --flush only there, and only
    # then does the user get a journal file of their own.
    unshare --mount="$NS" --propagation private sh -ec "
        mount -t tmpfs -o mode=755 ggrok-test /run/systemd
        mkdir -p /run/systemd/system /run/systemd/journald.conf.d
        printf '[Journal]\nStorage=persistent\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nAudit=no\n' \
            >/run/systemd/journald.conf.d/test.conf
        mount -t tmpfs -o mode=755 ggrok-test /run/log
        mount -t tmpfs -o mode=755 ggrok-test /var/log
        mkdir /var/log/journal
        mount --bind '$WORK/journal' /var/log/journal"
    (
        setsid nsenter --mount="$NS" /usr/lib/systemd/systemd-journald </dev/null >>"$WORK/journald.log" 2>&1 8>&- &
        record_pid "$WORK/journald.pid" $!
    )
    wait_until "$TMO" nsenter --mount="$NS" test -S /run/systemd/journal/stdout || die "journald did not start: $(cat "$WORK/journald.log")"
    nsenter --mount="$NS" journalctl --flush
    # --log-target=journal: else the manager's own messages ("Watchdog timeout") go nowhere.
    (
        setsid nsenter --mount="$NS" sh -c "for f in $cgs; do echo \$\$ >\$f; done
            exec setpriv --reuid=$UID_ --regid=$GID_ --init-groups env -i HOME='$HOME_DIR' USER='$NAME' LOGNAME='$NAME' \
                SHELL=/bin/sh PATH=/usr/bin:/bin XDG_RUNTIME_DIR='$RT' LANG=C.UTF-8 \
                /usr/lib/systemd/systemd --user --log-target=journal" </dev/null >>"$WORK/manager.log" 2>&1 8>&- &
        record_pid "$WORK/manager.pid" $!
    )
    wait_until "$TMO" test -S "$RT/systemd/private" || die "systemd --user did not start: $(cat "$WORK/manager.log")"
    eq "the user manager's state" "$(as_user timeout "$TMO" systemctl --user is-system-running --wait || true)" running
    log "user manager up: systemd $(as_user systemctl --user show -P Version), pid $(pid_of "$WORK/manager.pid")"
}

install_unit() {
    local units=$HOME_DIR/.config/systemd/user
    as_user mkdir -p "$units/ggrokd.service.d" "$HOME_DIR/.config/ggrok"
    # The unit as shipped (the package puts it in /usr/lib/systemd/user/; container.sh tests that
    # place), with ExecStart= on the copied binary.
    as_user cp "$WORK/ggrokd.service" "$units/ggrokd.service"
    printf '[Service]\nExecStart=\nExecStart=%s\n' "$WORK/bin/ggrokd" | as_user sh -c "cat >'$units/ggrokd.service.d/binary.conf'"
    { printf 'server = "%s"\ntoken = "%s"\n' "$SERVER_URL" "$TOKEN"; tunnel "$HOST_A"; } | write_config
    step "daemon-reload" as_user systemctl --user daemon-reload
}

test_start_status_ctl() {
    step "systemctl --user start ggrokd" as_user timeout "$TMO" systemctl --user start ggrokd.service
    # Type=notify: start returned, so ggrokd sent READY=1, after binding its control socket.
    eq "state after start" "$(show ActiveState)/$(show SubState)" active/running
    check "no control socket in the runtime directory" test -S "$RT/ggrok/ggrokd.sock"
    local out
    out=$(as_user "$WORK/bin/ggrokctl" status) || die "ggrokctl status failed: $out"
    has "ggrokctl status" "$out" "$HOST_A"
    wait_until "$TMO" status_has "1/1 tunnels online" || die "status line: $(show StatusText)"
    has "the status line" "$(show StatusText)" "connected to ${SERVER_URL#ws://}"
    log "status line: $(show StatusText)"
}

test_reload() {
    local pid
    pid=$(show MainPID)
    { printf 'server = "%s"\ntoken = "%s"\n' "$SERVER_URL" "$TOKEN"; tunnel "$HOST_A"; tunnel "$HOST_B"; } | write_config
    step "systemctl --user reload ggrokd" as_user timeout "$TMO" systemctl --user reload ggrokd.service
    eq "MainPID after reload" "$(show MainPID)" "$pid"
    wait_until "$TMO" status_has "2/2 tunnels online" || die "the reload did not apply the edit: $(show StatusText)"
    has "the journal after reload" "$(journal -o cat)" "SIGHUP: reloading the config"
    log "after reload: $(show StatusText)"
}

# Pings keep a healthy daemon alive past two watchdog periods; a frozen one is aborted and restarted.
test_watchdog() {
    local dropin=$HOME_DIR/.config/systemd/user/ggrokd.service.d/watchdog.conf pid
    printf '[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n' | as_user sh -c "cat >'$dropin'"
    as_user systemctl --user daemon-reload
    step "restart with WatchdogSec=2s" as_user timeout "$TMO" systemctl --user restart ggrokd.service
    eq "WatchdogUSec" "$(show WatchdogUSec)" 2s
    pid=$(show MainPID)
    local started
    started=$(show ExecMainStartTimestampMonotonic)
    # WatchdogTimestamp moves with every WATCHDOG=1; wait for one more than 4 s after the start.
    pinged_late() { [ "$(show WatchdogTimestampMonotonic)" -gt $((started + 4000000)) ]; }
    wait_until "$TMO" pinged_late || die "no watchdog ping 4 s after the start"
    eq "MainPID and NRestarts after two watchdog periods" "$(show MainPID)/$(show NRestarts)" "$pid/0"
    log "watchdog: pings kept ggrokd $pid alive past two periods of $(show WatchdogUSec) (NRestarts 0)"
    kill -STOP "$pid"
    restarted() { [ "$(show NRestarts)" = 1 ] && [ "$(show SubState)" = running ] && [ "$(show MainPID)" != "$pid" ]; }
    step "the watchdog restarts a frozen ggrokd" wait_until "$TMO" restarted
    check "the frozen ggrokd ($pid) is still there" sh -c "! kill -0 $pid 2>/dev/null"
    has "the journal after the watchdog" "$(journal -o cat)" "Watchdog timeout"
    log "watchdog: the frozen ggrokd $pid was aborted (\"Watchdog timeout\" in the journal) and restarted as $(show MainPID)"
    as_user rm "$dropin"
    as_user systemctl --user daemon-reload
}

test_stop_and_journal() {
    step "systemctl --user stop ggrokd" as_user timeout "$TMO" systemctl --user stop ggrokd.service
    eq "state after stop" "$(show ActiveState)/$(show Result)" inactive/success
    check "RuntimeDirectory $RT/ggrok was not removed on stop" test ! -e "$RT/ggrok"
    local json
    json=$(journal -o json)
    # Structured: ggrokd's own fields, and the unit journald derived from the cgroup.
    has "journalctl --user -u ggrokd -o json" "$json" '"_SYSTEMD_USER_UNIT":"ggrokd.service"'
    has "journalctl --user -u ggrokd -o json" "$json" '"GGROK_SOCKET":"'"$RT/ggrok/ggrokd.sock"'"'
    has "journalctl --user -u ggrokd -o json" "$json" '"GGROK_TUNNELS":"1"'
    log "journalctl --user -u ggrokd: $(journal -o cat | wc -l) lines, the last:"
    journal -n 5 >&2
}

# Exit code 2 (invalid config) is in RestartPreventExitStatus=: failed at once, not auto-restart.
test_invalid_config() {
    printf 'server = \n' | write_config
    if as_user timeout "$TMO" systemctl --user start ggrokd.service 2>/dev/null; then
        die "systemctl --user start succeeded with an invalid config"
    fi
    eq "state with an invalid config" "$(show ActiveState)/$(show SubState)/$(show Result)" failed/failed/exit-code
    eq "exit status with an invalid config" "$(show ExecMainStatus)" 2
    eq "NRestarts with an invalid config" "$(show NRestarts)" 0
    log "invalid config: start fails, exit status 2, unit failed with no restart scheduled"
    as_user systemctl --user reset-failed ggrokd.service
}

t0=$(date +%s)
up
install_unit
test_start_status_ctl
test_reload
test_watchdog
test_stop_and_journal
test_invalid_config
log "user unit: all passed in $(($(date +%s) - t0)) s"
