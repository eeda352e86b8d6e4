#!/usr/bin/env bash
# The packages in a booted Debian container (systemd-nspawn, image.sh's image, pristine each boot
# with --volatile=overlay, its own network namespace so port 80 clashes with nothing):
#   server.sh: the server .deb: dpkg -i, the service as its dynamic user reading its config
#     through the group ggrok, port 80 with its one capability, reinstall restarts it, TLS files
#     readable by the group with a [tls] config, and `systemctl reload` applying a new client;
#   client.sh: the client .deb under a lingering user: curl → ggrok-server → the user's ggrokd →
#     a local service, over HTTP and HTTPS; reload without procps; then purge removes both;
#   rpm.sh: the .rpm files' scripts and dependencies, with rpm, in the same container.
#
# Run as root by tests/tests/packaging/systemd.rs:
#   SERVER_DEB=… GGROK_DEB=… SERVER_RPM=… GGROK_RPM=… TLS_CERT=… TLS_KEY=… TLS_CA=… container.sh
#
# The container runs in a cgroup of its own (ggrok-test-ct), from a private mount namespace with a
# tmpfs on /run/systemd (else nspawn leaves /run/systemd/nspawn on the host); nothing is
# registered with machined. Powering it off and removing that cgroup leaves nothing behind.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

: "${SERVER_DEB:?}" "${GGROK_DEB:?}" "${SERVER_RPM:?}" "${GGROK_RPM:?}" "${TLS_CERT:?}" "${TLS_KEY:?}" "${TLS_CA:?}"
CG=ggrok-test-ct
require_host systemd-nspawn debootstrap
one_at_a_time container
clean_leftovers /tmp/ggrok-systemd-ct.*
cg_remove "$CG"
IMAGE=$("$HERE/image.sh" 8>&-) || die "no image"

WORK=$(mktemp -d /tmp/ggrok-systemd-ct.XXXXXX)
down() {
    if [ $? != 0 ] && [ -n "${LEADER:-}" ]; then
        log "the container's journal, last lines:"
        ct journalctl --no-pager -n 40 >&2 || true
    fi
    stop_pid "$WORK/nspawn.pid" 20   # SIGTERM to nspawn: a clean poweroff of the container
    cg_remove "$CG"
    rm -rf "$WORK"
    log "container powered off; its cgroup and $WORK removed"
}
[ -n "${KEEP:-}" ] || trap down EXIT   # KEEP=1: leave it running, to look around; the next run removes it

leader() { ps -o pid= --ppid "$(pid_of "$WORK/nspawn.pid")" | head -1 | tr -d ' '; }
# ct CMD...: CMD as root in the container, with a clean environment.
ct() {
    nsenter --target "$LEADER" --mount --uts --ipc --net --pid -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}
# put HOSTFILE PATH [MODE]: copies a file into the container.
put() {
    ct sh -c "umask 077; cat >'$2'" <"$1"
    ct chmod "${3:-644}" "$2"
}
# write PATH MODE: stdin into a file in the container.
write() { ct sh -c "umask 077; cat >'$1' && chmod $2 '$1'"; }

boot() {
    local h cgs=""
    for h in $(cg_roots); do
        mkdir -p "$h/$CG"
        cgs="$cgs $h/$CG/cgroup.procs"
    done
    # --register=no --keep-unit: no machined, no scope; nspawn makes $CG/{payload,supervisor}.
    (
        setsid unshare --mount --propagation private sh -ec "
            mount -t tmpfs -o mode=755 ggrok-test /run/systemd
            for f in $cgs; do echo \$\$ >\$f; done
            exec systemd-nspawn --quiet -D '$IMAGE' -M ggrok-test --boot --register=no --keep-unit \
                --private-network --volatile=overlay --console=passive" </dev/null >"$WORK/nspawn.log" 2>&1 8>&- &
        record_pid "$WORK/nspawn.pid" $!
    )
    wait_until "$TMO" sh -c "[ -n \"\$(ps -o pid= --ppid $(pid_of "$WORK/nspawn.pid"))\" ]" ||
        die "systemd-nspawn did not start: $(cat "$WORK/nspawn.log")"
    LEADER=$(leader)
    wait_until "$TMO" ct test -S /run/systemd/private || die "the container's systemd did not come up: $(cat "$WORK/nspawn.log")"
    local state
    state=$(ct timeout "$TMO" systemctl is-system-running --wait || true)
    [ "$state" = running ] || {
        ct systemctl --failed --no-pager >&2 || true
        die "the container is $state, not running"
    }
    log "container up: $(ct systemctl --version | head -1), PID 1 = host pid $LEADER"
}

t0=$(date +%s)
boot
. "$HERE/server.sh"
. "$HERE/client.sh"
. "$HERE/rpm.sh"
test_server_deb
test_server_tls
test_client_deb_end_to_end
test_unit_executables
test_purge
test_rpms
log "packages in the container: all passed in $(($(date +%s) - t0)) s"
