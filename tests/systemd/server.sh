# Sourced by container.sh: the ggrok-server .deb in the booted container.

HOST=lab.example.com
TOKEN=lab-token-0123456789abcdef0123456789abcdef

s_show() { ct systemctl show -P "$1" ggrok-server.service; }
s_is() { [ "$(s_show "$1")" = "$2" ]; }
# http [CURL ARGS...] URL: prints "CODE BODY" of a request made in the container.
http() {
    local code
    code=$(ct curl -s -m 10 -o /tmp/body -w '%{http_code}' "$@" || true)
    echo "$code $(ct cat /tmp/body 2>/dev/null || true)"
}
server_config() {
    printf 'listen = "0.0.0.0:80"\n'
    printf '[[client]]\nname = "lab"\ntoken = "%s"\nhosts = ["%s"]\n' "$TOKEN" "$HOST"
}

test_server_deb() {
    put "$SERVER_DEB" /tmp/ggrok-server.deb
    step "dpkg -i ggrok-server.deb" ct dpkg -i /tmp/ggrok-server.deb >"$WORK/dpkg.log"
    # Installing neither enables nor starts it: the shipped config admits nobody.
    eq "ggrok-server after install" "$(ct systemctl is-enabled ggrok-server.service || true)/$(s_show ActiveState)" disabled/inactive
    # Readable by root and the group ggrok (made by the package's sysusers.d file), nobody else.
    eq "/etc/ggrok/server.toml" "$(ct stat -c '%U:%G %a' /etc/ggrok/server.toml)" "root:ggrok 640"
    server_config | write /etc/ggrok/server.toml 640
    step "systemctl start ggrok-server" ct timeout "$TMO" systemctl start ggrok-server.service
    eq "state after start" "$(s_show ActiveState)/$(s_show SubState)" active/running
    has "the status line" "$(s_show StatusText)" "listening on 0.0.0.0:80"
    log "status line: $(s_show StatusText)"

    local pid user uid
    pid=$(s_show MainPID)
    # DynamicUser=yes: a user named after the unit, in systemd's dynamic range, only while it runs.
    user=$(ct stat -c %U "/proc/$pid") uid=$(ct stat -c %u "/proc/$pid")
    eq "the service's user" "$user" ggrok-server
    [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || die "uid $uid is not a dynamic one (61184-65519)"
    # The one capability, CAP_NET_BIND_SERVICE (bit 10), effective and bounding.
    eq "CapEff" "$(ct awk '/^CapEff/ { print $2 }' "/proc/$pid/status")" 0000000000000400
    eq "CapBnd" "$(ct awk '/^CapBnd/ { print $2 }' "/proc/$pid/status")" 0000000000000400
    # The config read in place, through the supplementary group ggrok: the dynamic user without
    # it cannot read the file.
    has "the command line" "$(ct sh -c "tr '\\0' ' ' </proc/$pid/cmdline")" "--config /etc/ggrok/server.toml"
    has "the service's groups" "$(ct awk '/^Groups/ { print $0 }' "/proc/$pid/status")" "$(ct getent group ggrok | cut -d: -f3)"
    ct setpriv --reuid="$uid" --regid="$uid" --clear-groups test -r /etc/ggrok/server.toml &&
        die "the dynamic user without the group ggrok can read /etc/ggrok/server.toml"
    log "ggrok-server runs as $user ($uid) in the group ggrok, CapEff 0x400, config /etc/ggrok/server.toml"
    # Port 80 answers: a host with no tunnel gets ggrok's own 404.
    eq "curl http://127.0.0.1/ (Host: nobody.example.com)" "$(http -H 'Host: nobody.example.com' http://127.0.0.1/)" \
        "404 ggrok: no tunnel is online for host nobody.example.com"

    # Reinstalling (as an upgrade does) restarts a running server.
    step "dpkg -i ggrok-server.deb again" ct dpkg -i /tmp/ggrok-server.deb >>"$WORK/dpkg.log"
    [ "$(s_show MainPID)" != "$pid" ] || die "reinstalling did not restart ggrok-server"
    eq "state after reinstall" "$(s_show ActiveState)/$(s_show SubState)" active/running
    eq "NRestarts after reinstall" "$(s_show NRestarts)" 0
}

# The documented way (README, the unit's comments): the key and certificate readable by root and
# the group ggrok only, named in server.toml by paths relative to /etc/ggrok. Then a renewed
# certificate, and a config change, are picked up by `systemctl reload` without a restart.
reload_logged() { ct journalctl -u ggrok-server.service --no-pager -o verbose | grep -q 'GGROK_ADDED=second'; }

test_server_tls() {
    put "$TLS_CERT" /etc/ggrok/tls.crt 640
    put "$TLS_KEY" /etc/ggrok/tls.key 640
    ct chgrp ggrok /etc/ggrok/tls.crt /etc/ggrok/tls.key
    put "$TLS_CA" /tmp/ca.pem 644
    { server_config; printf '[tls]\nlisten = "0.0.0.0:443"\n[[tls.certificate]]\ncert = "tls.crt"\nkey = "tls.key"\n'; } |
        write /etc/ggrok/server.toml 640
    step "ggrok-server --check with [tls]" ct ggrok-server --config /etc/ggrok/server.toml --check >/dev/null
    step "systemctl restart ggrok-server with [tls]" ct timeout "$TMO" systemctl restart ggrok-server.service
    eq "state with [tls]" "$(s_show ActiveState)/$(s_show SubState)" active/running
    eq "HTTPS on 443 (Host: nobody.example.com)" \
        "$(http --cacert /tmp/ca.pem --resolve nobody.example.com:443:127.0.0.1 https://nobody.example.com/)" \
        "404 ggrok: no tunnel is online for host nobody.example.com"
    log "HTTPS answers on 443 with the certificate readable through the group ggrok"

    # systemctl reload: the same process reads the file again (a second client here) and says so.
    local pid
    pid=$(s_show MainPID)
    { server_config; printf '[tls]\nlisten = "0.0.0.0:443"\n[[tls.certificate]]\ncert = "tls.crt"\nkey = "tls.key"\n';
      printf '[[client]]\nname = "second"\ntoken = "second-token-0123456789abcdef"\nhosts = ["second.example.com"]\n'; } |
        write /etc/ggrok/server.toml 640
    step "systemctl reload ggrok-server" ct timeout "$TMO" systemctl reload ggrok-server.service
    eq "the same process after reload" "$(s_show MainPID)" "$pid"
    eq "state after reload" "$(s_show ActiveState)/$(s_show SubState)" active/running
    wait_until "$TMO" reload_logged || die "no 'config reloaded' line with the new client in the journal"
    log "systemctl reload: the new client applied by the same process ($pid)"
}
