# Shared by user.sh and container.sh (sourced, not run): logging, bounded waits, the processes and
# cgroups the tests start, and the checks that the host can run a real systemd at all.
#
# The machines this runs on are root sandboxes whose PID 1 is not systemd. systemd still runs there:
# a user manager in a private mount namespace (user.sh), and a Debian container booted with
# systemd-nspawn (container.sh). Everything they start is tracked here and removed on exit, also
# on failure: processes by the pid recorded with its start time, cgroups bottom-up, mounts.
set -Eeuo pipefail
# A command that fails outside a check (errexit) says where, instead of ending the test silently.
trap 'log "FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: \"$BASH_COMMAND\" exited with status $?"' ERR

TMO=${TMO:-30}   # seconds, for every wait

log() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() {
    log "FAIL: $*"
    exit 1
}
# check WHAT CMD...: runs CMD, dies with WHAT when it fails.
check() {
    local what=$1
    shift
    "$@" || die "$what"
}
# step NAME CMD...: runs CMD, logs its duration; dies when it fails.
step() {
    local name=$1 t0 rc=0
    shift
    t0=$(date +%s%N)
    "$@" || rc=$?
    log "$name: $((($(date +%s%N) - t0) / 1000000)) ms"
    [ "$rc" = 0 ] || die "$name failed (exit status $rc)"
}
# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_until() {
    local end=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}
# eq WHAT ACTUAL EXPECTED: dies unless ACTUAL = EXPECTED.
eq() { [ "$2" = "$3" ] || die "$1: got '$2', expected '$3'"; }
# has WHAT TEXT PART: dies unless TEXT contains PART.
has() {
    case "$2" in
        *"$3"*) ;;
        *) die "$1: '$3' not in: $2" ;;
    esac
}

# Pid files hold "PID STARTTIME", so that a recycled pid is never taken for ours.
starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
record_pid() { echo "$2 $(starttime "$2")" >"$1"; }
pid_of() { cut -d' ' -f1 "$1"; }
alive() {
    local pid st
    [ -s "$1" ] && read -r pid st <"$1" && [ -n "$st" ] && [ "$(starttime "$pid")" = "$st" ]
}
# stop_pid PIDFILE SECONDS: SIGTERM, then SIGKILL after SECONDS; only the process recorded.
stop_pid() {
    local pid
    alive "$1" || {
        rm -f "$1"
        return 0
    }
    pid=$(pid_of "$1")
    kill -TERM "$pid" 2>/dev/null || true
    wait_until "$2" sh -c "! kill -0 $pid" || {
        log "pid $pid ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    }
    rm -f "$1"
}

# one_at_a_time NAME: holds /run/lock/ggrok-systemd-NAME.lock until the script exits, so that two
# runs (two clones, two CI jobs on one machine) never share the fixed names (the test user, the
# cgroups): the second waits. The processes the scripts leave running get fd 8 closed (8>&-).
one_at_a_time() {
    mkdir -p /run/lock
    exec 8>"/run/lock/ggrok-systemd-$1.lock"
    flock -w 600 8 || die "another run has held /run/lock/ggrok-systemd-$1.lock for 10 minutes"
}
# clean_leftovers DIR...: what a run killed before its cleanup (SIGKILL) left in its work
# directory: stops the processes its pid files name, unmounts, removes. Call with the lock held.
clean_leftovers() {
    local d f
    for d in "$@"; do
        [ -d "$d" ] || continue
        log "removing what a killed run left in $d"
        for f in "$d"/*.pid; do
            if [ -e "$f" ]; then stop_pid "$f" 5; fi
        done
        if findmnt -n "$d/mnt" >/dev/null 2>&1; then umount "$d/mnt" || true; fi
        rm -rf "$d"
    done
}

# The cgroup hierarchies systemd tracks processes in: cgroup2 and, on hybrid hosts, name=systemd.
cg_roots() {
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
        echo /sys/fs/cgroup
        return
    fi
    if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then echo /sys/fs/cgroup/unified; fi
    if [ -d /sys/fs/cgroup/systemd ]; then echo /sys/fs/cgroup/systemd; fi
}
# cg_remove REL: kills what is left in the subtree REL (only ours: the tests made it), removes it
# bottom-up.
cg_remove() {
    local h d p
    for h in $(cg_roots); do
        [ -d "$h/$1" ] || continue
        for p in $(find "$h/$1" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        for d in $(find "$h/$1" -depth -type d); do
            wait_until 5 rmdir "$d" || log "cannot remove cgroup $d"
        done
    done
}

# Exits with 77, saying why, when this host cannot run the test; tests/tests/packaging/systemd.rs then fails
# under CI and skips elsewhere.
cannot_run_here() {
    log "cannot run here: $*"
    exit 77
}
require_host() {
    [ "$(id -u)" = 0 ] || cannot_run_here "not root: a user manager and a container need root here"
    if [ -d /run/systemd/system ]; then
        cannot_run_here "systemd is PID 1 here; these tests start their own managers, for hosts where it is not"
    fi
    [ -n "$(cg_roots)" ] || cannot_run_here "no cgroup hierarchy systemd can use under /sys/fs/cgroup"
    local tool
    for tool in "$@" unshare nsenter setpriv; do
        command -v "$tool" >/dev/null || [ -x "$tool" ] || cannot_run_here "$tool is missing: run .ci/setup as root"
    done
    unshare --mount true 2>/dev/null || cannot_run_here "cannot create a mount namespace (unshare --mount)"
}
