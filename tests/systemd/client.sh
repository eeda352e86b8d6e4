# Sourced by container.sh, after server.sh: the ggrok .deb under a lingering user, end to end
# through the running ggrok-server; then what the units name, and purging both packages.

ALICE=alice
BODY="hello through the tunnel"

# as_alice CMD...: CMD as the lingering user, with her manager's runtime directory.
as_alice() { ct runuser -u "$ALICE" -- env XDG_RUNTIME_DIR="/run/user/$ALICE_UID" HOME="/home/$ALICE" "$@"; }
d_show() { as_alice systemctl --user show -P "$1" ggrokd.service; }
d_status_has() { case "$(d_show StatusText)" in *"$1"*) ;; *) return 1 ;; esac; }

test_client_deb_end_to_end() {
    put "$GGROK_DEB" /tmp/ggrok.deb
    step "dpkg -i ggrok.deb" ct dpkg -i /tmp/ggrok.deb >>"$WORK/dpkg.log"
    ct useradd --create-home --shell /bin/sh "$ALICE"
    ALICE_UID=$(ct id -u "$ALICE")
    # Lingering: her manager (and ggrokd) runs without a login session, from boot.
    step "loginctl enable-linger $ALICE" ct loginctl enable-linger "$ALICE"
    wait_until "$TMO" ct systemctl is-active -q "user@$ALICE_UID.service" || die "no user manager for $ALICE"

    # The local service: python3's HTTP server on 127.0.0.1:8080 (the container's own loopback).
    ct mkdir -p /srv/www
    echo "$BODY" | write /srv/www/index.html 644
    ct systemd-run --quiet --unit=ggrok-test-local -p User="$ALICE" -p Type=exec \
        python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv/www
    wait_until "$TMO" ct curl -sf -o /dev/null http://127.0.0.1:8080/ || die "the local service did not start"

    as_alice mkdir -p "/home/$ALICE/.config/ggrok"
    printf 'server = "ws://127.0.0.1:80"\ntoken = "%s"\n[[tunnel]]\nhost = "%s"\nlocal = "8080"\n' "$TOKEN" "$HOST" |
        as_alice sh -c 'umask 077; cat >"$HOME/.config/ggrok/ggrokd.toml"'
    # The packaged unit, from /usr/lib/systemd/user, as the README says.
    step "systemctl --user enable --now ggrokd" as_alice timeout "$TMO" systemctl --user enable --now ggrokd.service
    eq "ggrokd's state" "$(d_show ActiveState)/$(d_show SubState)" active/running
    wait_until "$TMO" d_status_has "1/1 tunnels online" || die "the tunnel is not online: $(d_show StatusText)"
    has "ggrokctl status" "$(as_alice ggrokctl status)" "$HOST"
    log "ggrokd: $(d_show StatusText); ggrok-server: $(s_show StatusText)"

    eq "curl http://$HOST/ through the tunnel" "$(http -H "Host: $HOST" http://127.0.0.1/)" "200 $BODY"
    eq "curl https://$HOST/ through the tunnel" \
        "$(http --cacert /tmp/ca.pem --resolve "$HOST:443:127.0.0.1" "https://$HOST/")" "200 $BODY"
    log "curl → ggrok-server (HTTP and HTTPS) → $ALICE's ggrokd → the local service: 200 \"$BODY\""

    # Reload on a system without procps (no /bin/kill): ExecReload= must not need it.
    check "procps is in the image: the reload check below would prove nothing" ct test ! -e /bin/kill
    local pid
    pid=$(d_show MainPID)
    step "systemctl --user reload ggrokd (no /bin/kill)" as_alice timeout "$TMO" systemctl --user reload ggrokd.service
    eq "ggrokd after reload" "$(d_show MainPID)/$(d_show ActiveState)" "$pid/active"
    has "ggrokd's journal" "$(as_alice journalctl --user -u ggrokd.service -o cat --no-pager)" "SIGHUP: reloading the config"
}

# Every program the installed units run exists in the image, which holds only the packages'
# dependencies and Debian's essential set.
test_unit_executables() {
    local unit line program
    for unit in /usr/lib/systemd/system/ggrok-server.service /usr/lib/systemd/user/ggrokd.service; do
        while read -r line; do
            program=${line#*=}
            program=${program##[-@:+!]}
            program=${program%% *}
            ct test -x "$program" || die "$unit: $line: $program is not in the container"
            log "$unit: ${line%%=*} runs $program: present"
        done < <(ct grep -E '^Exec[A-Za-z]*=' "$unit")
    done
}

# Purge removes the service (stopped and disabled by prerm), its unit, its config and its user.
test_purge() {
    as_alice systemctl --user disable --now ggrokd.service
    ct systemctl stop ggrok-test-local.service
    # The TLS files are the administrator's, not the package's.
    ct rm -f /etc/ggrok/tls.crt /etc/ggrok/tls.key
    step "dpkg --purge ggrok ggrok-server" ct dpkg --purge ggrok ggrok-server >>"$WORK/dpkg.log"
    eq "ggrok-server after purge" "$(s_show LoadState)/$(s_show ActiveState)" not-found/inactive
    check "/etc/ggrok is still there after purge" ct test ! -e /etc/ggrok
    check "/usr/lib/systemd/user/ggrokd.service is still there after purge" ct test ! -e /usr/lib/systemd/user/ggrokd.service
    ct getent passwd ggrok-server >/dev/null && die "the dynamic user ggrok-server still exists"
    eq "dpkg-query after purge" "$(ct dpkg-query -W -f='${db:Status-Status}' ggrok ggrok-server 2>/dev/null || true)" ""
    log "purged: no unit, no /etc/ggrok, no dynamic user"
}
